package main

// consume --bootstrap B --topic T --ends E0,E1,... [--group G] [--warmup N]
//
// Reads partitions 0..len(ends)-1 of T, each from its earliest offset up to (not including)
// its end, either by assigning the partitions (no group) or by subscribing to T in group G
// (franz-go's default group protocol, starting at the earliest offset), checking that every
// offset arrives exactly once.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// consumeLine is the output line of consume.
type consumeLine struct {
	Records         int64    `json:"records"`
	Bytes           int64    `json:"bytes"`
	StartedNs       int64    `json:"started_ns"`
	FirstNs         *int64   `json:"first_ns"`
	LastNs          *int64   `json:"last_ns"`
	ClosedNs        int64    `json:"closed_ns"`
	Complete        bool     `json:"complete"`
	Duplicates      int64    `json:"duplicates"`
	Missing         int64    `json:"missing"`
	Unexpected      int64    `json:"unexpected"`
	ExactlyOnce     bool     `json:"exactly_once"`
	WireSent        *uint64  `json:"wire_sent"`
	WireReceived    *uint64  `json:"wire_received"`
	WireConnections *int     `json:"wire_connections"`
	WarmupPasses    *int     `json:"warmup_passes,omitempty"`
	WarmCPUSeconds  *float64 `json:"warm_cpu_s,omitempty"`
}

// tally counts the records handed to the application and checks them against the ends.
type tally struct {
	ends, next []int64 // per partition: where it ends, and the next offset expected
	remaining  int     // partitions not at their end yet
	port       int     // the broker's port, for the wire bytes

	records, bytes                  int64
	duplicates, missing, unexpected int64
	firstNs, lastNs                 int64 // 0 until known
	wire                            *wire
}

func newTally(ends []int64, port int) *tally {
	t := &tally{ends: ends, next: make([]int64, len(ends)), port: port}
	for _, e := range ends {
		if e > 0 {
			t.remaining++
		}
	}
	return t
}

// observe counts one record of partition p at offset o with an n-byte value.
func (t *tally) observe(p int32, o int64, n int) {
	if t.firstNs == 0 {
		t.firstNs = nowNs()
	}
	t.records++
	t.bytes += int64(n)
	switch {
	case p < 0 || int(p) >= len(t.ends):
		t.unexpected++
	case o < t.next[p]:
		t.duplicates++
	case o >= t.ends[p]:
		t.unexpected++
	default:
		t.missing += o - t.next[p]
		t.next[p] = o + 1
		if o+1 == t.ends[p] {
			t.remaining--
			if t.remaining == 0 {
				t.lastNs = nowNs()
				// Read before the client closes its connections.
				t.wire = wireBytes(t.port)
			}
		}
	}
}

func (t *tally) done() bool { return t.remaining == 0 }

// summary says what the tally has seen, for a failure message.
func (t *tally) summary() string {
	var behind []string
	for p, end := range t.ends {
		if t.next[p] < end {
			behind = append(behind, fmt.Sprintf("%d at %d of %d", p, t.next[p], end))
		}
	}
	return fmt.Sprintf("%d records received, partitions not done: %s", t.records, strings.Join(behind, ", "))
}

// line is the output line, the consumer having closed at closedNs.
func (t *tally) line(closedNs int64) consumeLine {
	l := consumeLine{
		Records:     t.records,
		Bytes:       t.bytes,
		StartedNs:   started.UnixNano(),
		ClosedNs:    closedNs,
		Complete:    t.done(),
		Duplicates:  t.duplicates,
		Missing:     t.missing,
		Unexpected:  t.unexpected,
		ExactlyOnce: t.done() && t.duplicates == 0 && t.missing == 0 && t.unexpected == 0,
	}
	if t.firstNs != 0 {
		l.FirstNs = &t.firstNs
	}
	if t.lastNs != 0 {
		l.LastNs = &t.lastNs
	}
	if t.wire != nil {
		l.WireSent, l.WireReceived, l.WireConnections = &t.wire.sent, &t.wire.received, &t.wire.connections
	}
	return l
}

func runConsume(o options) {
	o.allow("bootstrap", "topic", "ends", "group", "warmup")
	bootstrap, topic := o.text("bootstrap"), o.text("topic")
	var ends []int64
	for _, s := range strings.Split(o.text("ends"), ",") {
		e, err := strconv.ParseInt(s, 10, 64)
		if err != nil || e < 0 {
			die("--ends must be non-negative integers separated by commas, got %q", o["ends"])
		}
		ends = append(ends, e)
	}
	group, grouped := o["group"]
	passes, warm := o.warmup()

	// Warm-up passes, each with a consumer of its own (in a group of its own).
	for i := 1; i <= passes; i++ {
		warmGroup := ""
		if grouped {
			warmGroup = fmt.Sprintf("%s-warm%d", group, i)
		}
		consumePass(bootstrap, topic, grouped, warmGroup, ends)
	}

	cpuBefore := cpuSeconds()
	t, closedNs := consumePass(bootstrap, topic, grouped, group, ends)
	line := t.line(closedNs)
	if warm {
		warmCPU := cpuSeconds() - cpuBefore
		line.WarmupPasses, line.WarmCPUSeconds = &passes, &warmCPU
	}
	printLine(line)
}

// consumePass reads the workload once with a new consumer, closes it, and returns the tally
// and when the consumer had closed.
func consumePass(bootstrap, topic string, grouped bool, group string, ends []int64) (*tally, int64) {
	opts := clientOptions(bootstrap)
	if grouped {
		opts = append(opts,
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		)
	} else {
		partitions := make(map[int32]kgo.Offset, len(ends))
		for p := range ends {
			partitions[int32(p)] = kgo.NewOffset().AtStart()
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: partitions}))
	}
	t := newTally(ends, brokerPort(bootstrap))
	cl := newClient(opts...)
	guard := newStallGuard()
	for !t.done() {
		fetches := cl.PollFetches(guard.ctx)
		if guard.stalled.Load() {
			die("no progress for 60 s: %s", t.summary())
		}
		for _, e := range fetches.Errors() {
			die("fetching %s partition %d: %v (%s)", e.Topic, e.Partition, e.Err, t.summary())
		}
		fetches.EachRecord(func(r *kgo.Record) {
			t.observe(r.Partition, r.Offset, len(r.Value))
		})
		guard.progress.Store(t.records)
	}
	guard.stop()
	cl.Close()
	return t, nowNs()
}
