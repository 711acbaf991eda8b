// Command franz-peer runs one benchmark workload with the franz-go Kafka client, as a process
// of its own, so that the benchmark driver can measure its CPU time and memory.
//
//	franz-peer consume|produce|txn|latency|share --name value ...
//
// Each subcommand prints exactly one JSON line to stdout when it ends, logs only warnings and
// errors to stderr, exits 0 on success, and on failure prints a one-line reason to stderr and
// exits 1. Times in the output are nanoseconds since the Unix epoch. The client runs at its
// default settings except what a subcommand sets. A run that makes no progress for 60 s fails.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

// The client's name in the output lines.
const clientName = "franz"

// How long a run may go without progress before it fails.
const stallLimit = 60 * time.Second

// When the process started, as near as the program can tell: package variables are set
// before main runs.
var started = time.Now()

// The subcommand being run, for error messages.
var command = "franz-peer"

func main() {
	if len(os.Args) < 2 {
		die("usage: franz-peer consume|produce|txn|latency|share --name value ...")
	}
	command = os.Args[1]
	opts := parseOptions(os.Args[2:])
	switch command {
	case "consume":
		runConsume(opts)
	case "produce":
		runProduce(opts)
	case "txn":
		runTxn(opts)
	case "latency":
		runLatency(opts)
	case "share":
		runShare(opts)
	default:
		die("unknown subcommand %q: consume, produce, txn, latency or share", command)
	}
}

// die prints a one-line reason to stderr and exits 1.
func die(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	fmt.Fprintf(os.Stderr, "franz-peer %s: %s\n", command, msg)
	os.Exit(1)
}

// printLine writes the one JSON output line to stdout.
func printLine(v any) {
	line, err := json.Marshal(v)
	if err != nil {
		die("encoding the output: %v", err)
	}
	fmt.Println(string(line))
}

// options are the `--name value` pairs of the command line.
type options map[string]string

func parseOptions(argv []string) options {
	o := options{}
	for i := 0; i < len(argv); i += 2 {
		name, ok := strings.CutPrefix(argv[i], "--")
		if !ok || name == "" {
			die("expected --name value, got %q", argv[i])
		}
		if i+1 >= len(argv) {
			die("--%s needs a value", name)
		}
		o[name] = argv[i+1]
	}
	return o
}

// allow fails on any option not among the names given.
func (o options) allow(names ...string) {
	for name := range o {
		known := false
		for _, n := range names {
			known = known || n == name
		}
		if !known {
			die("unknown option --%s", name)
		}
	}
}

// text is a required option.
func (o options) text(name string) string {
	v, ok := o[name]
	if !ok {
		die("missing --%s", name)
	}
	return v
}

// number is a required non-negative integer option.
func (o options) number(name string) int {
	n, err := strconv.Atoi(o.text(name))
	if err != nil || n < 0 {
		die("--%s must be a non-negative integer, got %q", name, o[name])
	}
	return n
}

// boolean is a required true|false option.
func (o options) boolean(name string) bool {
	switch o.text(name) {
	case "true":
		return true
	case "false":
		return false
	}
	die("--%s must be true or false, got %q", name, o[name])
	return false
}

// warmup is the optional --warmup N: the number of passes before the measured one, and
// whether it was given.
func (o options) warmup() (int, bool) {
	if _, ok := o["warmup"]; !ok {
		return 0, false
	}
	return o.number("warmup"), true
}

// clientOptions are the settings every client of this program gets: the bootstrap broker,
// and warnings and errors logged to stderr.
func clientOptions(bootstrap string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, nil)),
	}
}

// newClient creates a client or fails.
func newClient(opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		die("creating the client: %v", err)
	}
	return cl
}

// cpuSeconds is the process's user + system CPU time so far.
func cpuSeconds() float64 {
	var u unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return float64(u.Utime.Sec+u.Stime.Sec) + float64(u.Utime.Usec+u.Stime.Usec)/1e6
}

// nowNs is the wall-clock time in nanoseconds since the Unix epoch.
func nowNs() int64 { return time.Now().UnixNano() }

// stallGuard watches a progress counter and cancels its context when the counter has not
// moved for stallLimit. The work loops use the context for their blocking calls and store
// their progress in the counter.
type stallGuard struct {
	progress atomic.Int64
	stalled  atomic.Bool
	ctx      context.Context
	cancel   context.CancelFunc
}

func newStallGuard() *stallGuard {
	g := &stallGuard{}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, since := g.progress.Load(), time.Now()
		for {
			select {
			case <-g.ctx.Done():
				return
			case <-tick.C:
			}
			if p := g.progress.Load(); p != last {
				last, since = p, time.Now()
			} else if time.Since(since) >= stallLimit {
				g.stalled.Store(true)
				g.cancel()
				return
			}
		}
	}()
	return g
}

// stop ends the watch once the work is done.
func (g *stallGuard) stop() { g.cancel() }

// wire is the TCP payload on the process's connections to the broker.
type wire struct {
	sent, received uint64
	connections    int
}

// brokerPort is the port of the first bootstrap address.
func brokerPort(bootstrap string) int {
	first, _, _ := strings.Cut(bootstrap, ",")
	i := strings.LastIndex(first, ":")
	if i < 0 {
		return -1
	}
	port, err := strconv.Atoi(first[i+1:])
	if err != nil {
		return -1
	}
	return port
}

// wireBytes sums, over every TCP socket of this process whose peer is on port, the bytes
// the peer acknowledged (less the one the SYN counts) and the bytes received, from the
// kernel's TCP_INFO. It returns nil when /proc/self/fd cannot be read.
func wireBytes(port int) *wire {
	if port < 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	w := &wire{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		peer, err := unix.Getpeername(fd)
		if err != nil {
			continue // not a connected socket
		}
		switch a := peer.(type) {
		case *unix.SockaddrInet4:
			if a.Port != port {
				continue
			}
		case *unix.SockaddrInet6:
			if a.Port != port {
				continue
			}
		default:
			continue
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			continue
		}
		if info.Bytes_acked > 0 {
			w.sent += info.Bytes_acked - 1
		}
		w.received += info.Bytes_received
		w.connections++
	}
	return w
}
