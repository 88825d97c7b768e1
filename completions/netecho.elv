
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
            cand probe 'Ask a running ''netecho serve --metrics'' whether it is alive (or ready); exit 0 if so, 1 if not'
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
            cand --io 'With --multiplex: the kernel interface the event loop runs on. auto: io_uring where the kernel allows it, else epoll, saying why; uring: io_uring, or exit 1 with the reason if the kernel refuses it; epoll: epoll. Every mode (--tls, --proxy-protocol, --udp) runs on either. Ignored without --multiplex. The line after ''listening on'' says which runs'
            cand --udp-rate 'Answer at most N datagrams per second to each source address (loopback sources are not limited: they cannot be forged from outside); 0: no limit'
            cand --cert 'With --tls: the certificate chain to present (PEM, the server''s certificate first)'
            cand --key 'With --tls: the private key of --cert (PEM; PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519)'
            cand --client-ca 'With --tls: require a client certificate signed by a CA in FILE (PEM), mutual TLS; the client''s subject is shown on its connect line'
            cand --alpn 'With --tls: the ALPN protocols to offer, comma-separated, most preferred first (e.g. h2,http/1.1); the echo is the same whichever is chosen [default: none]'
            cand --handshake-timeout 'With --tls: drop a client whose handshake has not finished this long after it connected'
            cand --log-format 'How to write the report: text lines, or one JSON object per event (the events and their fields: JSON LOG in netecho-serve(1))'
            cand --metrics 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100; port 0 picks one, said on the line after `listening on`; what they are: METRICS in netecho-serve(1)) [default: off]'
            cand --id 'The name this server goes by: on the first line (''listening on ADDR as NAME''), in every JSON event, in the metrics (target_info) and in the --hello line. 1 to 253 bytes, no spaces or control characters (a pod''s name fits: --id "$POD_NAME") [default: the host name]'
            cand -q 'Do not print a line per read (connects, leaves and the summary are still shown)'
            cand --quiet 'Do not print a line per read (connects, leaves and the summary are still shown)'
            cand --hex 'Show each read as a hex dump (offset, hex, ASCII) instead of a one-line preview'
            cand --multiplex 'Serve all clients at once from one event loop (io_uring or epoll) instead of one at a time'
            cand --udp 'Serve UDP echo (RFC 862): each datagram back to its sender. With --multiplex: TCP and UDP on the same port; without: UDP only'
            cand --tls 'Speak TLS 1.2/1.3 to every client, in every TCP mode. Without --cert/--key, a throwaway self-signed certificate is made at start and its SHA-256 fingerprint printed on the second line, for ''send --tls --pin'''
            cand --proxy-protocol 'Expect a PROXY protocol header (HAProxy''s, v1 text or v2 binary) at the start of every TCP connection, before TLS with --tls, and report the client it names (''[CLIENT via PROXY] connected''); the header is never echoed. A connection whose header is not valid, or not whole within 5 seconds, is closed with one line saying why. With --udp beside TCP, only TCP expects it. Runs on epoll with --io uring'
            cand --inetd 'Echo stdin to stdout until EOF: the one connection inetd, xinetd or systemd (Accept=yes) hands over. The report goes to stderr; --host and --port are not used'
            cand --hello 'Greet each TCP client with one JSON line before the echo: who answered and what it saw of the connection (HELLO in netecho-serve(1)). With --udp, a datagram starting with ''NETECHO-HELLO'' is answered with that line instead of an echo, if it fits in the request'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;send'= {
            cand --host 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)'
            cand -p 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --port 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)'
            cand --timeout 'Give up connecting, or waiting for the server, after this long (e.g. 10, 1.5s, 2m)'
            cand --retries 'With --udp: send again this many times when no reply comes within --timeout'
            cand --proxy-protocol 'Start the connection with a PROXY protocol header (v1 or v2) naming this connection''s own addresses, as a load balancer would, to test a server behind one'
            cand --proxy-source 'With --proxy-protocol: name ADDR (and PORT, else this connection''s own port) as the client in the header instead of this connection''s own address, to test allow-lists and source-hash balancing behind a PROXY-aware balancer from one machine'
            cand --ca 'With --tls: also trust the CA certificates in FILE (PEM)'
            cand --pin 'With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever its names and dates (as ''serve --tls'' prints it; colons and the sha256: prefix optional)'
            cand --sni 'With --tls: the server name to ask for (SNI) and to verify the certificate against [default: --host]'
            cand --cert 'With --tls: present this client certificate chain (PEM), for servers that require one'
            cand --key 'With --tls: the private key of --cert (PEM)'
            cand --alpn 'With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]'
            cand -q 'Do not print status lines on stderr'
            cand --quiet 'Do not print status lines on stderr'
            cand --udp 'Send the message as one UDP datagram (at most 65507 bytes) instead of over TCP'
            cand --hello 'Expect the server''s hello line first (''netecho serve --hello''): print it on stderr, as the JSON object it is, then check the echo after it. With no MESSAGE and stdin a terminal, nothing is sent: only the hello (''what do you see of me?''). With --udp, ask for it with a padded datagram instead of sending a message'
            cand --tls 'Speak TLS to the server, verifying its certificate against the system''s CAs (and --ca)'
            cand --insecure 'With --tls: do not verify the server''s certificate at all (a warning on stderr says so)'
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
            cand --reconnect 'Close each connection after N messages and open a new one in its place (1: a new connection, and with --tls a new handshake, for every message) [default: never]'
            cand --proxy-protocol 'Start every connection with a PROXY protocol header (v1 or v2) naming its own addresses, as a load balancer would'
            cand --proxy-source 'With --proxy-protocol, name these clients in the headers instead of the connections'' own addresses, round robin by connection: one ADDR[:PORT], or a list, range (127.0.0.1-127.0.0.200) or CIDR block as --bind takes (with each connection''s own port), so allow-lists and source-hash balancing behind a PROXY-aware balancer can be tested from one machine'
            cand --expect-backends 'With --hello: fail (exit 1) when fewer than N distinct backends answered, after the report (a CI check of a balancer''s configuration)'
            cand --ca 'With --tls: also trust the CA certificates in FILE (PEM)'
            cand --pin 'With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever its names and dates (as ''serve --tls'' prints it; colons and the sha256: prefix optional)'
            cand --sni 'With --tls: the server name to ask for (SNI) and to verify the certificate against [default: --host]'
            cand --cert 'With --tls: present this client certificate chain (PEM), for servers that require one'
            cand --key 'With --tls: the private key of --cert (PEM)'
            cand --alpn 'With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]'
            cand --connect-rate 'Open loop over connections: open R new connections per second (at most 1e9), each sending --messages K then closing; connect latency is counted from when each was due. --connections is then the most open at once [default: off]'
            cand --messages 'With --connect-rate: messages each new connection sends (and checks) before it closes'
            cand --hdr-log 'Write the latencies as an HdrHistogram interval log (one histogram per interval and measure, tagged latency, latency-uncorrected, connect or handshake, in nanoseconds) with a header naming this agent, the target and the options; ''netecho bench merge'' reads it'
            cand --start-at 'Begin the measured load at this time, so agents on many machines begin together: RFC 3339 (2026-12-08T10:00:00Z) or Unix seconds (1796724000); at most a day ahead. Connections are set up before it; an agent ready late says so and measures from then'
            cand --bind 'Source addresses to spread the connections (UDP: sockets) over, round robin: a list (10.0.0.5,10.0.0.6), a range (127.0.0.2-127.0.0.200) or a CIDR block (127.0.1.0/24), up to 65536; each must be an address of this machine [default: the kernel''s choice]'
            cand --interval 'Print a line per interval while the run goes (messages/s, bits/s, latency, errors), as iperf3 -i does; with --hdr-log, also the log''s interval [default: off, log: 1s]'
            cand --tos 'IP TOS byte of the load''s packets, 0-255 (IPv6: traffic class)'
            cand --dscp 'DSCP of the load''s packets, 0-63 (the TOS byte''s upper six bits; ECN bits zero)'
            cand --sndbuf 'Send buffer of each connection or socket (SO_SNDBUF), e.g. 256k [default: the kernel''s]'
            cand --rcvbuf 'Receive buffer of each connection or socket (SO_RCVBUF), e.g. 256k [default: the kernel''s]'
            cand --udp 'Over UDP: each message is a datagram; a reply not back within a few round trips counts as lost, and the load goes on'
            cand --json 'Print the report as one JSON object'
            cand --hello 'Read every connection''s hello line (''netecho serve --hello'') before its first message, and report the run per backend (the hello''s id): connections, messages, bytes and latency of each, in the table and as the JSON ''backends'' array. With --reconnect N it shows how a balancer spreads new connections'
            cand --tls 'Speak TLS to the server, verifying its certificate against the system''s CAs (and --ca)'
            cand --insecure 'With --tls: do not verify the server''s certificate at all (a warning on stderr says so)'
            cand --no-resumption 'With --tls: make every handshake a full one, never resuming an earlier session'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand merge 'Merge the HdrHistogram logs of many bench agents into one report'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'netecho;bench;merge'= {
            cand --json 'Print the report as one JSON object'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'netecho;bench;help'= {
            cand merge 'Merge the HdrHistogram logs of many bench agents into one report'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'netecho;bench;help;merge'= {
        }
        &'netecho;bench;help;help'= {
        }
        &'netecho;probe'= {
            cand --metrics 'The server''s --metrics address, IP:PORT (0.0.0.0 or [::] ask loopback)'
            cand --timeout 'Give up after this long without the whole answer (e.g. 2, 500ms)'
            cand --ready 'Ask /readyz (taking new clients: not starting, not draining) instead of /healthz (alive)'
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
            cand probe 'Ask a running ''netecho serve --metrics'' whether it is alive (or ready); exit 0 if so, 1 if not'
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
            cand merge 'Merge the HdrHistogram logs of many bench agents into one report'
        }
        &'netecho;help;bench;merge'= {
        }
        &'netecho;help;probe'= {
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
