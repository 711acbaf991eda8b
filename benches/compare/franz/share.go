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

	seen := newDistinct()
	var first, last time.Time
	for seen.count < want {
		fetches := cl.PollFetches(guard.ctx)
		if guard.stalled.Load() {
			die("no progress for 60 s: %d distinct records of %d", seen.count, want)
		}
		for _, e := range fetches.Errors() {
			die("fetching %s partition %d: %v (%d distinct records of %d)",
				e.Topic, e.Partition, e.Err, seen.count, want)
		}
		// A poll's records all reached the application at this moment.
		now := time.Now()
		before := seen.count
		fetches.EachRecord(func(r *kgo.Record) {
			if first.IsZero() {
				first = now
			}
			seen.add(r.Partition, r.Offset)
		})
		if seen.count > before {
			last = now
		}
		guard.progress.Store(int64(seen.count))
	}
	guard.stop()
	// The last poll's records were processed too: accept them (another poll would have),
	// rather than have the close release them for redelivery.
	cl.MarkAcks(kgo.AckAccept)
	cl.Close()

	seconds := last.Sub(first).Seconds()
	fmt.Printf("{\"client\":%q,\"records\":%d,\"seconds\":%.3f,\"records_per_s\":%.0f,\"cpu_s\":%.3f}\n",
		clientName, seen.count, seconds, float64(seen.count)/max(seconds, 1e-9), cpuSeconds())
}

// bitmapOffsets: offsets below it are counted in a bitmap per partition (the benchmark's topic
// is new, its offsets start at 0); any others in a map.
const bitmapOffsets = 1 << 26

// distinct counts distinct (partition, offset) pairs: a bit per offset rather than a map,
// whose inserts miss the cache (the harness's cost, not the client's).
type distinct struct {
	bits   [][]uint64
	others map[[2]int64]struct{}
	count  int
}

func newDistinct() *distinct {
	return &distinct{others: map[[2]int64]struct{}{}}
}

func (d *distinct) add(partition int32, offset int64) {
	if partition < 0 || offset < 0 || offset >= bitmapOffsets {
		key := [2]int64{int64(partition), offset}
		if _, again := d.others[key]; !again {
			d.others[key] = struct{}{}
			d.count++
		}
		return
	}
	for int(partition) >= len(d.bits) {
		d.bits = append(d.bits, nil)
	}
	words := d.bits[partition]
	word := int(offset / 64)
	for word >= len(words) {
		words = append(words, 0)
	}
	d.bits[partition] = words
	bit := uint64(1) << uint(offset%64)
	if words[word]&bit == 0 {
		words[word] |= bit
		d.count++
	}
}
