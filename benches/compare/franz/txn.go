package main

// txn --bootstrap B --topic T --transactions N --records R --size S
//
// A transactional producer (transactional id bench-franz-<pid>, otherwise default settings)
// loads its producer id, then writes N transactions of R records of S bytes ('x' repeated) to
// partition 0 of T: begin, send R records, flush, commit. The time is taken from the first
// begin to the end of the last commit.

import (
	"bytes"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func runTxn(o options) {
	o.allow("bootstrap", "topic", "transactions", "records", "size")
	topic := o.text("topic")
	transactions, records := o.number("transactions"), o.number("records")
	value := bytes.Repeat([]byte("x"), o.number("size"))

	id := fmt.Sprintf("bench-%s-%d", clientName, os.Getpid())
	cl := newClient(append(clientOptions(o.text("bootstrap")),
		kgo.TransactionalID(id),
		// Every record names its partition, 0.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	guard := newStallGuard()
	// fail reports an error, or a stall when the guard ran out of patience.
	fail := func(what string, err error) {
		if guard.stalled.Load() {
			die("no progress for 60 s while %s: %d records acknowledged", what, guard.progress.Load())
		}
		die("%s: %v", what, err)
	}

	// Initialize the transactional producer: the producer id and epoch.
	if _, _, err := cl.ProducerID(guard.ctx); err != nil {
		fail("initializing transactions", err)
	}

	// Promises run one at a time, on the client's goroutine.
	var failed atomic.Int64
	var firstError atomic.Pointer[string]
	promise := func(_ *kgo.Record, err error) {
		if err != nil && failed.Add(1) == 1 {
			text := err.Error()
			firstError.Store(&text)
		}
		guard.progress.Add(1)
	}

	begun := time.Now()
	for range transactions {
		if err := cl.BeginTransaction(); err != nil {
			fail("beginning a transaction", err)
		}
		for range records {
			cl.Produce(guard.ctx, &kgo.Record{Topic: topic, Partition: 0, Value: value}, promise)
		}
		if err := cl.Flush(guard.ctx); err != nil {
			fail("flushing a transaction", err)
		}
		if n := failed.Load(); n > 0 {
			die("%d records failed, the first with: %s", n, *firstError.Load())
		}
		if err := cl.EndTransaction(guard.ctx, kgo.TryCommit); err != nil {
			fail("committing a transaction", err)
		}
	}
	seconds := time.Since(begun).Seconds()
	guard.stop()
	cl.Close()

	written := transactions * records
	fmt.Printf("{\"client\":%q,\"transactions\":%d,\"records\":%d,\"seconds\":%.3f,"+
		"\"transactions_per_s\":%.1f,\"records_per_s\":%.0f,\"cpu_s\":%.3f}\n",
		clientName, transactions, written, seconds,
		float64(transactions)/seconds, float64(written)/seconds, cpuSeconds())
}
