package main

// produce --bootstrap B --topic T --records N --values FILE --size S --acks 1|all
//   --idempotence true|false --compression none|lz4|zstd --keys true|false [--warmup N]
//
// Sends N records to T with the client's ordinary asynchronous Produce and a promise per
// record, then flushes and closes the producer. Record i's value is value number i mod K of
// FILE (K values of S bytes back to back); with keys, its key is i mod 10007 as 8 zero-padded
// digits. The partition is the default partitioner's choice; only acks, idempotence and the
// compression codec are set.

import (
	"fmt"
	"os"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceLine is the output line of produce.
type produceLine struct {
	Records        int      `json:"records"`
	Bytes          int64    `json:"bytes"`
	StartedNs      int64    `json:"started_ns"`
	FirstNs        int64    `json:"first_ns"`
	LastNs         int64    `json:"last_ns"`
	ClosedNs       int64    `json:"closed_ns"`
	Errors         int64    `json:"errors"`
	FirstError     *string  `json:"first_error"`
	WarmupPasses   *int     `json:"warmup_passes,omitempty"`
	WarmCPUSeconds *float64 `json:"warm_cpu_s,omitempty"`
}

// produceWork is what every pass sends.
type produceWork struct {
	topic   string
	records int
	values  [][]byte
	keys    [][]byte // nil without keys
	opts    []kgo.Opt
}

func runProduce(o options) {
	o.allow("bootstrap", "topic", "records", "values", "size", "acks", "idempotence",
		"compression", "keys", "warmup")
	w := produceWork{topic: o.text("topic"), records: o.number("records")}

	size := o.number("size")
	data, err := os.ReadFile(o.text("values"))
	if err != nil {
		die("reading the values: %v", err)
	}
	if size == 0 || len(data) == 0 || len(data)%size != 0 {
		die("the values file's %d bytes are not a whole number of %d-byte values", len(data), size)
	}
	for at := 0; at < len(data); at += size {
		w.values = append(w.values, data[at:at+size:at+size])
	}
	if o.boolean("keys") {
		for i := range 10007 {
			w.keys = append(w.keys, fmt.Appendf(nil, "%08d", i))
		}
	}

	w.opts = clientOptions(o.text("bootstrap"))
	switch o.text("acks") {
	case "1":
		w.opts = append(w.opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case "all":
		w.opts = append(w.opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	default:
		die("--acks must be 1 or all, got %q", o["acks"])
	}
	if !o.boolean("idempotence") {
		w.opts = append(w.opts, kgo.DisableIdempotentWrite())
	}
	switch o.text("compression") {
	case "none":
		w.opts = append(w.opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case "lz4":
		w.opts = append(w.opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		w.opts = append(w.opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	default:
		die("--compression must be none, lz4 or zstd, got %q", o["compression"])
	}

	passes, warm := o.warmup()
	for i := 1; i <= passes; i++ {
		if l := producePass(w); l.Errors > 0 {
			die("warm-up pass %d: %d records failed, the first with: %s", i, l.Errors, *l.FirstError)
		}
	}
	cpuBefore := cpuSeconds()
	line := producePass(w)
	if warm {
		warmCPU := cpuSeconds() - cpuBefore
		line.WarmupPasses, line.WarmCPUSeconds = &passes, &warmCPU
	}
	printLine(line)
	if line.Errors > 0 {
		die("%d records failed, the first with: %s", line.Errors, *line.FirstError)
	}
}

// producePass sends the records once with a new producer, waits for every promise, closes
// the producer and returns the output line.
func producePass(w produceWork) produceLine {
	cl := newClient(w.opts...)
	guard := newStallGuard()

	// Promises run one at a time, on the client's goroutine.
	var completed, failed, lastNs atomic.Int64
	var firstError atomic.Pointer[string]
	promise := func(_ *kgo.Record, err error) {
		if err != nil && failed.Add(1) == 1 {
			text := err.Error()
			firstError.Store(&text)
		}
		n := completed.Add(1)
		if n == int64(w.records) {
			lastNs.Store(nowNs())
		}
		guard.progress.Store(n)
	}

	line := produceLine{Records: w.records, StartedNs: started.UnixNano(), FirstNs: nowNs()}
	for i := range w.records {
		r := &kgo.Record{Topic: w.topic, Value: w.values[i%len(w.values)]}
		if w.keys != nil {
			r.Key = w.keys[i%len(w.keys)]
		}
		line.Bytes += int64(len(r.Value))
		cl.Produce(guard.ctx, r, promise)
	}
	err := cl.Flush(guard.ctx)
	if guard.stalled.Load() {
		die("no progress for 60 s: %d of %d records completed", completed.Load(), w.records)
	}
	if err != nil {
		die("flushing: %v", err)
	}
	guard.stop()
	cl.Close()
	line.ClosedNs = nowNs()

	line.LastNs = lastNs.Load()
	if w.records == 0 {
		line.LastNs = line.FirstNs
	}
	line.Errors = failed.Load()
	line.FirstError = firstError.Load()
	return line
}
