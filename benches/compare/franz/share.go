package main

// share --bootstrap B --topic T --group G --records N
//
// A member of share group G (KIP-932) reads T until it has seen N distinct offsets, with
// franz-go's implicit acknowledgement (the records of one poll are accepted by the next poll)
// and default settings otherwise. The time is taken from the first record to the N-th
// distinct one.

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func runShare(o options) {
	o.allow("bootstrap", "topic", "group", "records")
	want := o.number("records")
	cl := newClient(append(clientOptions(o.text("bootstrap")),
		kgo.ShareGroup(o.text("group")),
		kgo.ConsumeTopics(o.text("topic")),
	)...)
	guard := newStallGuard()

	type partitionOffset struct {
		partition int32
		offset    int64
	}
	seen := make(map[partitionOffset]struct{}, want)
	var first, last time.Time
	for len(seen) < want {
		fetches := cl.PollFetches(guard.ctx)
		if guard.stalled.Load() {
			die("no progress for 60 s: %d distinct records of %d", len(seen), want)
		}
		for _, e := range fetches.Errors() {
			die("fetching %s partition %d: %v (%d distinct records of %d)",
				e.Topic, e.Partition, e.Err, len(seen), want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			key := partitionOffset{r.Partition, r.Offset}
			if _, again := seen[key]; !again {
				seen[key] = struct{}{}
				last = now
			}
		})
		guard.progress.Store(int64(len(seen)))
	}
	guard.stop()
	// The last poll's records were processed too: accept them (another poll would have),
	// rather than have the close release them for redelivery.
	cl.MarkAcks(kgo.AckAccept)
	cl.Close()

	seconds := last.Sub(first).Seconds()
	fmt.Printf("{\"client\":%q,\"records\":%d,\"seconds\":%.3f,\"records_per_s\":%.0f,\"cpu_s\":%.3f}\n",
		clientName, len(seen), seconds, float64(len(seen))/max(seconds, 1e-9), cpuSeconds())
}
