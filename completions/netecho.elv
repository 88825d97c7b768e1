
use builtin;
use str;

set edit:completion:arg-completer[netecho] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'netecho'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'netecho'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run a TCP echo server: every byte a client sends comes back, in order'
            cand send 'Send a message (or stdin) to an echo server and print the reply'
            cand ports 'List the services registered for a range of ports, from /etc/services'
            cand bench 'Load an echo server with many connections and check every echoed byte'
            cand completions 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
            cand man 'Print the man page of netecho or of one of its commands, or write them all into a folder'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'netecho;serve'= {
            cand --host 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)'
            cand -p 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --port 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --preview 'Show at most N bytes of each read in its preview (or hex dump) [default: what fits in an 80-column line; with --hex, all]'
            cand --idle-timeout 'Drop a client that has made no progress for this long (e.g. 30, 1.5s, 2m) [default: off]'
            cand --max-connections 'With --multiplex: serve at most N clients at once (split evenly over --workers, at least one each); more wait in the listen queue [default: the open-file limit, raised to its hard maximum at start, minus a reserve of 64 and 4 per worker]'
            cand --drain-timeout 'With --multiplex: on SIGINT/SIGTERM, let in-flight echoes finish for up to this long (0: close at once)'
            cand --workers 'With --multiplex: run N independent event loops, each on its own thread with its own SO_REUSEPORT listener on the same address (the kernel spreads new clients over them)'
            cand --udp-rate 'Answer at most N datagrams per second to each source address (loopback sources are not limited: they cannot be forged from outside); 0: no limit'
            cand -q 'Do not print a line per read (connects, leaves and the summary are still shown)'
            cand --quiet 'Do not print a line per read (connects, leaves and the summary are still shown)'
            cand --hex 'Show each read as a hex dump (offset, hex, ASCII) instead of a one-line preview'
            cand --multiplex 'Serve all clients at once from one event loop (epoll/kqueue) instead of one at a time'
            cand --udp 'Serve UDP echo (RFC 862): each datagram back to its sender. With --multiplex: TCP and UDP on the same port; without: UDP only'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;send'= {
            cand --host 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)'
            cand -p 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --port 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --timeout 'Give up connecting, or waiting for the server, after this long (e.g. 10, 1.5s, 2m)'
            cand --retries 'With --udp: send again this many times when no reply comes within --timeout'
            cand -q 'Do not print status lines on stderr'
            cand --quiet 'Do not print status lines on stderr'
            cand --udp 'Send the message as one UDP datagram (at most 65507 bytes) instead of over TCP'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;ports'= {
            cand --low 'First port of the range, instead of the LOW argument'
            cand --high 'Last port of the range, instead of the HIGH argument [default with --low: 65535]'
            cand --services-file 'Read services from this file (services(5) format) [default: /etc/services]'
            cand --protocol 'Only services registered for this protocol'
            cand --name 'Only services whose name or an alias contains PATTERN (case-insensitive)'
            cand --format 'Output format [default: table on a terminal, plain otherwise]'
            cand --strict 'Fail on the first malformed line of the services file instead of skipping it'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;bench'= {
            cand --host 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)'
            cand -p 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --port 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand -c 'Connections to open (with --udp: sockets)'
            cand --connections 'Connections to open (with --udp: sockets)'
            cand -s 'Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)'
            cand --size 'Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)'
            cand -d 'How long to send (e.g. 10, 10s, 2m, 500ms)'
            cand --duration 'How long to send (e.g. 10, 10s, 2m, 500ms)'
            cand --pipeline 'Messages in flight per connection (closed loop)'
            cand --rate 'Open loop: send R messages per second in total (at most 1e9), whatever the server does [default: off]'
            cand --threads 'Event-loop threads, each with its share of the connections'
            cand --timeout 'Give up on a connect, or on a reply, after this long (UDP: the longest wait before a reply counts as lost)'
            cand --udp 'Over UDP: each message is a datagram; a reply not back within a few round trips counts as lost, and the load goes on'
            cand --json 'Print the report as one JSON object'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;completions'= {
            cand --out-dir 'Write the script(s) into DIR, created if missing, instead of printing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;man'= {
            cand --out-dir 'Write netecho.1 and every netecho-COMMAND.1 into DIR, created if missing, instead of printing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;help'= {
            cand serve 'Run a TCP echo server: every byte a client sends comes back, in order'
            cand send 'Send a message (or stdin) to an echo server and print the reply'
            cand ports 'List the services registered for a range of ports, from /etc/services'
            cand bench 'Load an echo server with many connections and check every echoed byte'
            cand completions 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
            cand man 'Print the man page of netecho or of one of its commands, or write them all into a folder'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'netecho;help;serve'= {
        }
        &'netecho;help;send'= {
        }
        &'netecho;help;ports'= {
        }
        &'netecho;help;bench'= {
        }
        &'netecho;help;completions'= {
        }
        &'netecho;help;man'= {
        }
        &'netecho;help;help'= {
        }
    ]
    $completions[$command]
}
