
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'netecho' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'netecho'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'netecho' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a TCP echo server: every byte a client sends comes back, in order')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send a message (or stdin) to an echo server and print the reply')
            [CompletionResult]::new('ports', 'ports', [CompletionResultType]::ParameterValue, 'List the services registered for a range of ports, from /etc/services')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load an echo server with many connections and check every echoed byte')
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Ask a running ''netecho serve --metrics'' whether it is alive (or ready); exit 0 if so, 1 if not')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print the shell completion script for bash, zsh, fish, elvish or powershell')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page of netecho or of one of its commands, or write them all into a folder')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'netecho;serve' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)')
            [CompletionResult]::new('--preview', '--preview', [CompletionResultType]::ParameterName, 'Show at most N bytes of each read in its preview (or hex dump) [default: what fits in an 80-column line; with --hex, all]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Drop a client that has made no progress for this long (e.g. 30, 1.5s, 2m) [default: off]')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'With --multiplex: serve at most N clients at once (split evenly over --workers, at least one each); more wait in the listen queue [default: the open-file limit, raised to its hard maximum at start, minus a reserve of 64 and 4 per worker]')
            [CompletionResult]::new('--drain-timeout', '--drain-timeout', [CompletionResultType]::ParameterName, 'With --multiplex: on SIGINT/SIGTERM, let in-flight echoes finish for up to this long (0: close at once)')
            [CompletionResult]::new('--workers', '--workers', [CompletionResultType]::ParameterName, 'With --multiplex: run N independent event loops, each on its own thread with its own SO_REUSEPORT listener on the same address (the kernel spreads new clients over them)')
            [CompletionResult]::new('--io', '--io', [CompletionResultType]::ParameterName, 'With --multiplex: the kernel interface the event loop runs on. auto: io_uring where the kernel allows it, else epoll, saying why; uring: io_uring, or exit 1 with the reason if the kernel refuses it; epoll: epoll. Every mode (--tls, --proxy-protocol, --udp) runs on either. Ignored without --multiplex. The line after ''listening on'' says which runs')
            [CompletionResult]::new('--udp-rate', '--udp-rate', [CompletionResultType]::ParameterName, 'Answer at most N datagrams per second to each source address (loopback sources are not limited: they cannot be forged from outside); 0: no limit')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'With --tls: the certificate chain to present (PEM, the server''s certificate first)')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'With --tls: the private key of --cert (PEM; PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519)')
            [CompletionResult]::new('--client-ca', '--client-ca', [CompletionResultType]::ParameterName, 'With --tls: require a client certificate signed by a CA in FILE (PEM), mutual TLS; the client''s subject is shown on its connect line')
            [CompletionResult]::new('--alpn', '--alpn', [CompletionResultType]::ParameterName, 'With --tls: the ALPN protocols to offer, comma-separated, most preferred first (e.g. h2,http/1.1); the echo is the same whichever is chosen [default: none]')
            [CompletionResult]::new('--handshake-timeout', '--handshake-timeout', [CompletionResultType]::ParameterName, 'With --tls: drop a client whose handshake has not finished this long after it connected')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'How to write the report: text lines, or one JSON object per event (the events and their fields: JSON LOG in netecho-serve(1))')
            [CompletionResult]::new('--metrics', '--metrics', [CompletionResultType]::ParameterName, 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100; port 0 picks one, said on the line after `listening on`; what they are: METRICS in netecho-serve(1)) [default: off]')
            [CompletionResult]::new('--id', '--id', [CompletionResultType]::ParameterName, 'The name this server goes by: on the first line (''listening on ADDR as NAME''), in every JSON event, in the metrics (target_info) and in the --hello line. 1 to 253 bytes, no spaces or control characters (a pod''s name fits: --id "$POD_NAME") [default: the host name]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Do not print a line per read (connects, leaves and the summary are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Do not print a line per read (connects, leaves and the summary are still shown)')
            [CompletionResult]::new('--hex', '--hex', [CompletionResultType]::ParameterName, 'Show each read as a hex dump (offset, hex, ASCII) instead of a one-line preview')
            [CompletionResult]::new('--multiplex', '--multiplex', [CompletionResultType]::ParameterName, 'Serve all clients at once from one event loop (io_uring or epoll) instead of one at a time')
            [CompletionResult]::new('--udp', '--udp', [CompletionResultType]::ParameterName, 'Serve UDP echo (RFC 862): each datagram back to its sender. With --multiplex: TCP and UDP on the same port; without: UDP only')
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, 'Speak TLS 1.2/1.3 to every client, in every TCP mode. Without --cert/--key, a throwaway self-signed certificate is made at start and its SHA-256 fingerprint printed on the second line, for ''send --tls --pin''')
            [CompletionResult]::new('--proxy-protocol', '--proxy-protocol', [CompletionResultType]::ParameterName, 'Expect a PROXY protocol header (HAProxy''s, v1 text or v2 binary) at the start of every TCP connection, before TLS with --tls, and report the client it names (''[CLIENT via PROXY] connected''); the header is never echoed. A connection whose header is not valid, or not whole within 5 seconds, is closed with one line saying why. With --udp beside TCP, only TCP expects it. Runs on epoll with --io uring')
            [CompletionResult]::new('--inetd', '--inetd', [CompletionResultType]::ParameterName, 'Echo stdin to stdout until EOF: the one connection inetd, xinetd or systemd (Accept=yes) hands over. The report goes to stderr; --host and --port are not used')
            [CompletionResult]::new('--hello', '--hello', [CompletionResultType]::ParameterName, 'Greet each TCP client with one JSON line before the echo: who answered and what it saw of the connection (HELLO in netecho-serve(1)). With --udp, a datagram starting with ''NETECHO-HELLO'' is answered with that line instead of an echo, if it fits in the request')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;send' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up connecting, or waiting for the server, after this long (e.g. 10, 1.5s, 2m)')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'With --udp: send again this many times when no reply comes within --timeout')
            [CompletionResult]::new('--proxy-protocol', '--proxy-protocol', [CompletionResultType]::ParameterName, 'Start the connection with a PROXY protocol header (v1 or v2) naming this connection''s own addresses, as a load balancer would, to test a server behind one')
            [CompletionResult]::new('--proxy-source', '--proxy-source', [CompletionResultType]::ParameterName, 'With --proxy-protocol: name ADDR (and PORT, else this connection''s own port) as the client in the header instead of this connection''s own address, to test allow-lists and source-hash balancing behind a PROXY-aware balancer from one machine')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'With --tls: also trust the CA certificates in FILE (PEM)')
            [CompletionResult]::new('--pin', '--pin', [CompletionResultType]::ParameterName, 'With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever its names and dates (as ''serve --tls'' prints it; colons and the sha256: prefix optional)')
            [CompletionResult]::new('--sni', '--sni', [CompletionResultType]::ParameterName, 'With --tls: the server name to ask for (SNI) and to verify the certificate against [default: --host]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'With --tls: present this client certificate chain (PEM), for servers that require one')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'With --tls: the private key of --cert (PEM)')
            [CompletionResult]::new('--alpn', '--alpn', [CompletionResultType]::ParameterName, 'With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Do not print status lines on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Do not print status lines on stderr')
            [CompletionResult]::new('--udp', '--udp', [CompletionResultType]::ParameterName, 'Send the message as one UDP datagram (at most 65507 bytes) instead of over TCP')
            [CompletionResult]::new('--hello', '--hello', [CompletionResultType]::ParameterName, 'Expect the server''s hello line first (''netecho serve --hello''): print it on stderr, as the JSON object it is, then check the echo after it. With no MESSAGE and stdin a terminal, nothing is sent: only the hello (''what do you see of me?''). With --udp, ask for it with a padded datagram instead of sending a message')
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, 'Speak TLS to the server, verifying its certificate against the system''s CAs (and --ca)')
            [CompletionResult]::new('--insecure', '--insecure', [CompletionResultType]::ParameterName, 'With --tls: do not verify the server''s certificate at all (a warning on stderr says so)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;ports' {
            [CompletionResult]::new('--low', '--low', [CompletionResultType]::ParameterName, 'First port of the range, instead of the LOW argument')
            [CompletionResult]::new('--high', '--high', [CompletionResultType]::ParameterName, 'Last port of the range, instead of the HIGH argument [default with --low: 65535]')
            [CompletionResult]::new('--services-file', '--services-file', [CompletionResultType]::ParameterName, 'Read services from this file (services(5) format) [default: /etc/services]')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Only services registered for this protocol')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Only services whose name or an alias contains PATTERN (case-insensitive)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: table on a terminal, plain otherwise]')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Fail on the first malformed line of the services file instead of skipping it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;bench' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Connections to open (with --udp: sockets)')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'Connections to open (with --udp: sockets)')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)')
            [CompletionResult]::new('--size', '--size', [CompletionResultType]::ParameterName, 'Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'How long to send (e.g. 10, 10s, 2m, 500ms)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long to send (e.g. 10, 10s, 2m, 500ms)')
            [CompletionResult]::new('--pipeline', '--pipeline', [CompletionResultType]::ParameterName, 'Messages in flight per connection (closed loop)')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'Open loop: send R messages per second in total (at most 1e9), whatever the server does [default: off]')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Event-loop threads, each with its share of the connections')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on a connect, or on a reply, after this long (UDP: the longest wait before a reply counts as lost)')
            [CompletionResult]::new('--reconnect', '--reconnect', [CompletionResultType]::ParameterName, 'Close each connection after N messages and open a new one in its place (1: a new connection, and with --tls a new handshake, for every message) [default: never]')
            [CompletionResult]::new('--proxy-protocol', '--proxy-protocol', [CompletionResultType]::ParameterName, 'Start every connection with a PROXY protocol header (v1 or v2) naming its own addresses, as a load balancer would')
            [CompletionResult]::new('--proxy-source', '--proxy-source', [CompletionResultType]::ParameterName, 'With --proxy-protocol, name these clients in the headers instead of the connections'' own addresses, round robin by connection: one ADDR[:PORT], or a list, range (127.0.0.1-127.0.0.200) or CIDR block as --bind takes (with each connection''s own port), so allow-lists and source-hash balancing behind a PROXY-aware balancer can be tested from one machine')
            [CompletionResult]::new('--expect-backends', '--expect-backends', [CompletionResultType]::ParameterName, 'With --hello: fail (exit 1) when fewer than N distinct backends answered, after the report (a CI check of a balancer''s configuration)')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'With --tls: also trust the CA certificates in FILE (PEM)')
            [CompletionResult]::new('--pin', '--pin', [CompletionResultType]::ParameterName, 'With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever its names and dates (as ''serve --tls'' prints it; colons and the sha256: prefix optional)')
            [CompletionResult]::new('--sni', '--sni', [CompletionResultType]::ParameterName, 'With --tls: the server name to ask for (SNI) and to verify the certificate against [default: --host]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'With --tls: present this client certificate chain (PEM), for servers that require one')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'With --tls: the private key of --cert (PEM)')
            [CompletionResult]::new('--alpn', '--alpn', [CompletionResultType]::ParameterName, 'With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]')
            [CompletionResult]::new('--connect-rate', '--connect-rate', [CompletionResultType]::ParameterName, 'Open loop over connections: open R new connections per second (at most 1e9), each sending --messages K then closing; connect latency is counted from when each was due. --connections is then the most open at once [default: off]')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'With --connect-rate: messages each new connection sends (and checks) before it closes')
            [CompletionResult]::new('--hdr-log', '--hdr-log', [CompletionResultType]::ParameterName, 'Write the latencies as an HdrHistogram interval log (one histogram per interval and measure, tagged latency, latency-uncorrected, connect or handshake, in nanoseconds) with a header naming this agent, the target and the options; ''netecho bench merge'' reads it')
            [CompletionResult]::new('--start-at', '--start-at', [CompletionResultType]::ParameterName, 'Begin the measured load at this time, so agents on many machines begin together: RFC 3339 (2026-12-08T10:00:00Z) or Unix seconds (1796724000); at most a day ahead. Connections are set up before it; an agent ready late says so and measures from then')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Source addresses to spread the connections (UDP: sockets) over, round robin: a list (10.0.0.5,10.0.0.6), a range (127.0.0.2-127.0.0.200) or a CIDR block (127.0.1.0/24), up to 65536; each must be an address of this machine [default: the kernel''s choice]')
            [CompletionResult]::new('--interval', '--interval', [CompletionResultType]::ParameterName, 'Print a line per interval while the run goes (messages/s, bits/s, latency, errors), as iperf3 -i does; with --hdr-log, also the log''s interval [default: off, log: 1s]')
            [CompletionResult]::new('--tos', '--tos', [CompletionResultType]::ParameterName, 'IP TOS byte of the load''s packets, 0-255 (IPv6: traffic class)')
            [CompletionResult]::new('--dscp', '--dscp', [CompletionResultType]::ParameterName, 'DSCP of the load''s packets, 0-63 (the TOS byte''s upper six bits; ECN bits zero)')
            [CompletionResult]::new('--sndbuf', '--sndbuf', [CompletionResultType]::ParameterName, 'Send buffer of each connection or socket (SO_SNDBUF), e.g. 256k [default: the kernel''s]')
            [CompletionResult]::new('--rcvbuf', '--rcvbuf', [CompletionResultType]::ParameterName, 'Receive buffer of each connection or socket (SO_RCVBUF), e.g. 256k [default: the kernel''s]')
            [CompletionResult]::new('--udp', '--udp', [CompletionResultType]::ParameterName, 'Over UDP: each message is a datagram; a reply not back within a few round trips counts as lost, and the load goes on')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the report as one JSON object')
            [CompletionResult]::new('--hello', '--hello', [CompletionResultType]::ParameterName, 'Read every connection''s hello line (''netecho serve --hello'') before its first message, and report the run per backend (the hello''s id): connections, messages, bytes and latency of each, in the table and as the JSON ''backends'' array. With --reconnect N it shows how a balancer spreads new connections')
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, 'Speak TLS to the server, verifying its certificate against the system''s CAs (and --ca)')
            [CompletionResult]::new('--insecure', '--insecure', [CompletionResultType]::ParameterName, 'With --tls: do not verify the server''s certificate at all (a warning on stderr says so)')
            [CompletionResult]::new('--no-resumption', '--no-resumption', [CompletionResultType]::ParameterName, 'With --tls: make every handshake a full one, never resuming an earlier session')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('merge', 'merge', [CompletionResultType]::ParameterValue, 'Merge the HdrHistogram logs of many bench agents into one report')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'netecho;bench;merge' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the report as one JSON object')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;bench;help' {
            [CompletionResult]::new('merge', 'merge', [CompletionResultType]::ParameterValue, 'Merge the HdrHistogram logs of many bench agents into one report')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'netecho;bench;help;merge' {
            break
        }
        'netecho;bench;help;help' {
            break
        }
        'netecho;probe' {
            [CompletionResult]::new('--metrics', '--metrics', [CompletionResultType]::ParameterName, 'The server''s --metrics address, IP:PORT (0.0.0.0 or [::] ask loopback)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long without the whole answer (e.g. 2, 500ms)')
            [CompletionResult]::new('--ready', '--ready', [CompletionResultType]::ParameterName, 'Ask /readyz (taking new clients: not starting, not draining) instead of /healthz (alive)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;completions' {
            [CompletionResult]::new('--out-dir', '--out-dir', [CompletionResultType]::ParameterName, 'Write the script(s) into DIR, created if missing, instead of printing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;man' {
            [CompletionResult]::new('--out-dir', '--out-dir', [CompletionResultType]::ParameterName, 'Write netecho.1 and every netecho-COMMAND.1 into DIR, created if missing, instead of printing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'netecho;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a TCP echo server: every byte a client sends comes back, in order')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send a message (or stdin) to an echo server and print the reply')
            [CompletionResult]::new('ports', 'ports', [CompletionResultType]::ParameterValue, 'List the services registered for a range of ports, from /etc/services')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load an echo server with many connections and check every echoed byte')
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Ask a running ''netecho serve --metrics'' whether it is alive (or ready); exit 0 if so, 1 if not')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print the shell completion script for bash, zsh, fish, elvish or powershell')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page of netecho or of one of its commands, or write them all into a folder')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'netecho;help;serve' {
            break
        }
        'netecho;help;send' {
            break
        }
        'netecho;help;ports' {
            break
        }
        'netecho;help;bench' {
            [CompletionResult]::new('merge', 'merge', [CompletionResultType]::ParameterValue, 'Merge the HdrHistogram logs of many bench agents into one report')
            break
        }
        'netecho;help;bench;merge' {
            break
        }
        'netecho;help;probe' {
            break
        }
        'netecho;help;completions' {
            break
        }
        'netecho;help;man' {
            break
        }
        'netecho;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
