# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_netecho_global_optspecs
    string join \n h/help V/version
end

function __fish_netecho_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_netecho_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_netecho_using_subcommand
    set -l cmd (__fish_netecho_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c netecho -n "__fish_netecho_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_needs_command" -s V -l version -d 'Print version'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "serve" -d 'Run a TCP echo server: every byte a client sends comes back, in order'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "send" -d 'Send a message (or stdin) to an echo server and print the reply'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "ports" -d 'List the services registered for a range of ports, from /etc/services'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "bench" -d 'Load an echo server with many connections and check every echoed byte'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "probe" -d 'Ask a running \'netecho serve --metrics\' whether it is alive (or ready); exit 0 if so, 1 if not'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "man" -d 'Print the man page of netecho or of one of its commands, or write them all into a folder'
complete -c netecho -n "__fish_netecho_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l host -d 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)' -r -f -a "(__fish_print_hostnames)"
complete -c netecho -n "__fish_netecho_using_subcommand serve" -s p -l port -d 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l preview -d 'Show at most N bytes of each read in its preview (or hex dump) [default: what fits in an 80-column line; with --hex, all]' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l idle-timeout -d 'Drop a client that has made no progress for this long (e.g. 30, 1.5s, 2m) [default: off]' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l max-connections -d 'With --multiplex: serve at most N clients at once (split evenly over --workers, at least one each); more wait in the listen queue [default: the open-file limit, raised to its hard maximum at start, minus a reserve of 64 and 4 per worker]' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l drain-timeout -d 'With --multiplex: on SIGINT/SIGTERM, let in-flight echoes finish for up to this long (0: close at once)' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l workers -d 'With --multiplex: run N independent event loops, each on its own thread with its own SO_REUSEPORT listener on the same address (the kernel spreads new clients over them)' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l io -d 'With --multiplex: the kernel interface the event loop runs on. auto: io_uring where the kernel allows it, else epoll, saying why; uring: io_uring, or exit 1 with the reason if the kernel refuses it; epoll: epoll. Every mode (--tls, --proxy-protocol, --udp) runs on either. Ignored without --multiplex. The line after \'listening on\' says which runs' -r -f -a "auto\t'The best the kernel allows; falls back to epoll, saying why'
uring\t'io_uring (multishot accept and receive, provided buffers); fails if unavailable'
epoll\t'epoll readiness, one receive and one send per message'"
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l udp-rate -d 'Answer at most N datagrams per second to each source address (loopback sources are not limited: they cannot be forged from outside); 0: no limit' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l cert -d 'With --tls: the certificate chain to present (PEM, the server\'s certificate first)' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l key -d 'With --tls: the private key of --cert (PEM; PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519)' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l client-ca -d 'With --tls: require a client certificate signed by a CA in FILE (PEM), mutual TLS; the client\'s subject is shown on its connect line' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l alpn -d 'With --tls: the ALPN protocols to offer, comma-separated, most preferred first (e.g. h2,http/1.1); the echo is the same whichever is chosen [default: none]' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l handshake-timeout -d 'With --tls: drop a client whose handshake has not finished this long after it connected' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l log-format -d 'How to write the report: text lines, or one JSON object per event (the events and their fields: JSON LOG in netecho-serve(1))' -r -f -a "text\t'One line of text per event'
json\t'One JSON object per line per event, with an RFC 3339 timestamp'"
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l metrics -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100; port 0 picks one, said on the line after `listening on`; what they are: METRICS in netecho-serve(1)) [default: off]' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l id -d 'The name this server goes by: on the first line (\'listening on ADDR as NAME\'), in every JSON event, in the metrics (target_info) and in the --hello line. 1 to 253 bytes, no spaces or control characters (a pod\'s name fits: --id "$POD_NAME") [default: the host name]' -r
complete -c netecho -n "__fish_netecho_using_subcommand serve" -s q -l quiet -d 'Do not print a line per read (connects, leaves and the summary are still shown)'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l hex -d 'Show each read as a hex dump (offset, hex, ASCII) instead of a one-line preview'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l multiplex -d 'Serve all clients at once from one event loop (io_uring or epoll) instead of one at a time'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l udp -d 'Serve UDP echo (RFC 862): each datagram back to its sender. With --multiplex: TCP and UDP on the same port; without: UDP only'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l tls -d 'Speak TLS 1.2/1.3 to every client, in every TCP mode. Without --cert/--key, a throwaway self-signed certificate is made at start and its SHA-256 fingerprint printed on the second line, for \'send --tls --pin\''
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l proxy-protocol -d 'Expect a PROXY protocol header (HAProxy\'s, v1 text or v2 binary) at the start of every TCP connection, before TLS with --tls, and report the client it names (\'[CLIENT via PROXY] connected\'); the header is never echoed. A connection whose header is not valid, or not whole within 5 seconds, is closed with one line saying why. With --udp beside TCP, only TCP expects it. Runs on epoll with --io uring'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l inetd -d 'Echo stdin to stdout until EOF: the one connection inetd, xinetd or systemd (Accept=yes) hands over. The report goes to stderr; --host and --port are not used'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -l hello -d 'Greet each TCP client with one JSON line before the echo: who answered and what it saw of the connection (HELLO in netecho-serve(1)). With --udp, a datagram starting with \'NETECHO-HELLO\' is answered with that line instead of an echo, if it fits in the request'
complete -c netecho -n "__fish_netecho_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand send" -l host -d 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)' -r -f -a "(__fish_print_hostnames)"
complete -c netecho -n "__fish_netecho_using_subcommand send" -s p -l port -d 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)' -r
complete -c netecho -n "__fish_netecho_using_subcommand send" -l timeout -d 'Give up connecting, or waiting for the server, after this long (e.g. 10, 1.5s, 2m)' -r
complete -c netecho -n "__fish_netecho_using_subcommand send" -l retries -d 'With --udp: send again this many times when no reply comes within --timeout' -r
complete -c netecho -n "__fish_netecho_using_subcommand send" -l proxy-protocol -d 'Start the connection with a PROXY protocol header (v1 or v2) naming this connection\'s own addresses, as a load balancer would, to test a server behind one' -r -f -a "v1\t'Version 1: one line of text (`PROXY TCP4 src dst sport dport`)'
v2\t'Version 2: the binary header'"
complete -c netecho -n "__fish_netecho_using_subcommand send" -l proxy-source -d 'With --proxy-protocol: name ADDR (and PORT, else this connection\'s own port) as the client in the header instead of this connection\'s own address, to test allow-lists and source-hash balancing behind a PROXY-aware balancer from one machine' -r
complete -c netecho -n "__fish_netecho_using_subcommand send" -l ca -d 'With --tls: also trust the CA certificates in FILE (PEM)' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand send" -l pin -d 'With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever its names and dates (as \'serve --tls\' prints it; colons and the sha256: prefix optional)' -r
complete -c netecho -n "__fish_netecho_using_subcommand send" -l sni -d 'With --tls: the server name to ask for (SNI) and to verify the certificate against [default: --host]' -r -f -a "(__fish_print_hostnames)"
complete -c netecho -n "__fish_netecho_using_subcommand send" -l cert -d 'With --tls: present this client certificate chain (PEM), for servers that require one' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand send" -l key -d 'With --tls: the private key of --cert (PEM)' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand send" -l alpn -d 'With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]' -r
complete -c netecho -n "__fish_netecho_using_subcommand send" -s q -l quiet -d 'Do not print status lines on stderr'
complete -c netecho -n "__fish_netecho_using_subcommand send" -l udp -d 'Send the message as one UDP datagram (at most 65507 bytes) instead of over TCP'
complete -c netecho -n "__fish_netecho_using_subcommand send" -l hello -d 'Expect the server\'s hello line first (\'netecho serve --hello\'): print it on stderr, as the JSON object it is, then check the echo after it. With no MESSAGE and stdin a terminal, nothing is sent: only the hello (\'what do you see of me?\'). With --udp, ask for it with a padded datagram instead of sending a message'
complete -c netecho -n "__fish_netecho_using_subcommand send" -l tls -d 'Speak TLS to the server, verifying its certificate against the system\'s CAs (and --ca)'
complete -c netecho -n "__fish_netecho_using_subcommand send" -l insecure -d 'With --tls: do not verify the server\'s certificate at all (a warning on stderr says so)'
complete -c netecho -n "__fish_netecho_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l low -d 'First port of the range, instead of the LOW argument' -r
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l high -d 'Last port of the range, instead of the HIGH argument [default with --low: 65535]' -r
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l services-file -d 'Read services from this file (services(5) format) [default: /etc/services]' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l protocol -d 'Only services registered for this protocol' -r -f -a "tcp\t''
udp\t''
sctp\t''
dccp\t''
ddp\t'AppleTalk Datagram Delivery Protocol: its numbers are not IP ports, so it is only listed when asked for'"
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l name -d 'Only services whose name or an alias contains PATTERN (case-insensitive)' -r
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l format -d 'Output format [default: table on a terminal, plain otherwise]' -r -f -a "table\t'A table with borders that fits the terminal width'
plain\t'Tab-separated PORT, PROTOCOL, SERVICE, ALIASES lines, no header'
json\t'An array of {port, protocol, service, aliases} objects, one per protocol'"
complete -c netecho -n "__fish_netecho_using_subcommand ports" -l strict -d 'Fail on the first malformed line of the services file instead of skipping it'
complete -c netecho -n "__fish_netecho_using_subcommand ports" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l host -d 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)' -r -f -a "(__fish_print_hostnames)"
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -s p -l port -d 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -s c -l connections -d 'Connections to open (with --udp: sockets)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -s s -l size -d 'Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -s d -l duration -d 'How long to send (e.g. 10, 10s, 2m, 500ms)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l pipeline -d 'Messages in flight per connection (closed loop)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l rate -d 'Open loop: send R messages per second in total (at most 1e9), whatever the server does [default: off]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l threads -d 'Event-loop threads, each with its share of the connections' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l timeout -d 'Give up on a connect, or on a reply, after this long (UDP: the longest wait before a reply counts as lost)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l reconnect -d 'Close each connection after N messages and open a new one in its place (1: a new connection, and with --tls a new handshake, for every message) [default: never]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l proxy-protocol -d 'Start every connection with a PROXY protocol header (v1 or v2) naming its own addresses, as a load balancer would' -r -f -a "v1\t'Version 1: one line of text (`PROXY TCP4 src dst sport dport`)'
v2\t'Version 2: the binary header'"
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l proxy-source -d 'With --proxy-protocol, name these clients in the headers instead of the connections\' own addresses, round robin by connection: one ADDR[:PORT], or a list, range (127.0.0.1-127.0.0.200) or CIDR block as --bind takes (with each connection\'s own port), so allow-lists and source-hash balancing behind a PROXY-aware balancer can be tested from one machine' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l expect-backends -d 'With --hello: fail (exit 1) when fewer than N distinct backends answered, after the report (a CI check of a balancer\'s configuration)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l ca -d 'With --tls: also trust the CA certificates in FILE (PEM)' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l pin -d 'With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever its names and dates (as \'serve --tls\' prints it; colons and the sha256: prefix optional)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l sni -d 'With --tls: the server name to ask for (SNI) and to verify the certificate against [default: --host]' -r -f -a "(__fish_print_hostnames)"
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l cert -d 'With --tls: present this client certificate chain (PEM), for servers that require one' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l key -d 'With --tls: the private key of --cert (PEM)' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l alpn -d 'With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l connect-rate -d 'Open loop over connections: open R new connections per second (at most 1e9), each sending --messages K then closing; connect latency is counted from when each was due. --connections is then the most open at once [default: off]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l messages -d 'With --connect-rate: messages each new connection sends (and checks) before it closes' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l hdr-log -d 'Write the latencies as an HdrHistogram interval log (one histogram per interval and measure, tagged latency, latency-uncorrected, connect or handshake, in nanoseconds) with a header naming this agent, the target and the options; \'netecho bench merge\' reads it' -r -F
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l start-at -d 'Begin the measured load at this time, so agents on many machines begin together: RFC 3339 (2026-12-08T10:00:00Z) or Unix seconds (1796724000); at most a day ahead. Connections are set up before it; an agent ready late says so and measures from then' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l bind -d 'Source addresses to spread the connections (UDP: sockets) over, round robin: a list (10.0.0.5,10.0.0.6), a range (127.0.0.2-127.0.0.200) or a CIDR block (127.0.1.0/24), up to 65536; each must be an address of this machine [default: the kernel\'s choice]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l interval -d 'Print a line per interval while the run goes (messages/s, bits/s, latency, errors), as iperf3 -i does; with --hdr-log, also the log\'s interval [default: off, log: 1s]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l tos -d 'IP TOS byte of the load\'s packets, 0-255 (IPv6: traffic class)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l dscp -d 'DSCP of the load\'s packets, 0-63 (the TOS byte\'s upper six bits; ECN bits zero)' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l sndbuf -d 'Send buffer of each connection or socket (SO_SNDBUF), e.g. 256k [default: the kernel\'s]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l rcvbuf -d 'Receive buffer of each connection or socket (SO_RCVBUF), e.g. 256k [default: the kernel\'s]' -r
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l udp -d 'Over UDP: each message is a datagram; a reply not back within a few round trips counts as lost, and the load goes on'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l json -d 'Print the report as one JSON object'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l hello -d 'Read every connection\'s hello line (\'netecho serve --hello\') before its first message, and report the run per backend (the hello\'s id): connections, messages, bytes and latency of each, in the table and as the JSON \'backends\' array. With --reconnect N it shows how a balancer spreads new connections'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l tls -d 'Speak TLS to the server, verifying its certificate against the system\'s CAs (and --ca)'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l insecure -d 'With --tls: do not verify the server\'s certificate at all (a warning on stderr says so)'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -l no-resumption -d 'With --tls: make every handshake a full one, never resuming an earlier session'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -f -a "merge" -d 'Merge the HdrHistogram logs of many bench agents into one report'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and not __fish_seen_subcommand_from merge help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and __fish_seen_subcommand_from merge" -l json -d 'Print the report as one JSON object'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and __fish_seen_subcommand_from merge" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "merge" -d 'Merge the HdrHistogram logs of many bench agents into one report'
complete -c netecho -n "__fish_netecho_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netecho -n "__fish_netecho_using_subcommand probe" -l metrics -d 'The server\'s --metrics address, IP:PORT (0.0.0.0 or [::] ask loopback)' -r
complete -c netecho -n "__fish_netecho_using_subcommand probe" -l timeout -d 'Give up after this long without the whole answer (e.g. 2, 500ms)' -r
complete -c netecho -n "__fish_netecho_using_subcommand probe" -l ready -d 'Ask /readyz (taking new clients: not starting, not draining) instead of /healthz (alive)'
complete -c netecho -n "__fish_netecho_using_subcommand probe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand completions" -l out-dir -d 'Write the script(s) into DIR, created if missing, instead of printing' -r -f -a "(__fish_complete_directories)"
complete -c netecho -n "__fish_netecho_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand man" -l out-dir -d 'Write netecho.1 and every netecho-COMMAND.1 into DIR, created if missing, instead of printing' -r -f -a "(__fish_complete_directories)"
complete -c netecho -n "__fish_netecho_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "serve" -d 'Run a TCP echo server: every byte a client sends comes back, in order'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "send" -d 'Send a message (or stdin) to an echo server and print the reply'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "ports" -d 'List the services registered for a range of ports, from /etc/services'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "bench" -d 'Load an echo server with many connections and check every echoed byte'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "probe" -d 'Ask a running \'netecho serve --metrics\' whether it is alive (or ready); exit 0 if so, 1 if not'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "man" -d 'Print the man page of netecho or of one of its commands, or write them all into a folder'
complete -c netecho -n "__fish_netecho_using_subcommand help; and not __fish_seen_subcommand_from serve send ports bench probe completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netecho -n "__fish_netecho_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "merge" -d 'Merge the HdrHistogram logs of many bench agents into one report'
complete -c netecho -n "__fish_netecho_using_subcommand completions" -f -a "bash elvish fish powershell zsh"
complete -c netecho -n "__fish_netecho_using_subcommand man" -f -a "serve send ports bench probe completions man"
