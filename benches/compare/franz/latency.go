package main

// latency --bootstrap B --topic T --partitions P --rate R --seconds D --warmup-seconds W
//   --size S
//
// One process runs a consumer and a producer, both at default settings. The consumer assigns
// partitions 0..P-1 of the empty topic T from offset 0 and has issued its first Fetch before
// the producer starts. The producer sends R records a second for W + D seconds, paced evenly
// (record i is due at t0 + i/R; the loop wakes every millisecond and sends every record due),
// each value holding the wall-clock nanoseconds just before its send, big-endian, in its first
// 8 bytes. The consumer computes now - stamp for every record; the records due in the first
// W seconds (numbers below R*W, told apart by their stamps) are received but not counted. After the last send the program waits until every
// record has come back, or 30 s, after which the ones missing are lost.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// How long to wait, after the last send, for every record to come back.
const drainLimit = 30 * time.Second

// fetchWatch is a client hook that closes issued once the client has written its first Fetch
// request to a broker.
type fetchWatch struct {
	once   sync.Once
	issued chan struct{}
}

func (f *fetchWatch) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.Fetch.Int16() && err == nil {
		f.once.Do(func() { close(f.issued) })
	}
}

func runLatency(o options) {
	o.allow("bootstrap", "topic", "partitions", "rate", "seconds", "warmup-seconds", "size")
	bootstrap, topic := o.text("bootstrap"), o.text("topic")
	partitions, rate, size := o.number("partitions"), int64(o.number("rate")), o.number("size")
	measured, warmup := int64(o.number("seconds")), int64(o.number("warmup-seconds"))
	if size < 8 {
		die("--size must be at least 8 (the time stamp), got %d", size)
	}
	if rate == 0 {
		die("--rate must be positive")
	}
	total := rate * (warmup + measured)
	guard := newStallGuard()

	// The consumer, polling on a goroutine of its own.
	watch := &fetchWatch{issued: make(chan struct{})}
	assigned := make(map[int32]kgo.Offset, partitions)
	for p := range partitions {
		assigned[int32(p)] = kgo.NewOffset().At(0)
	}
	consumer := newClient(append(clientOptions(bootstrap),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assigned}),
		kgo.WithHooks(watch),
	)...)
	var (
		warmEndNs   atomic.Int64 // records stamped before this were sent in the warm-up
		received    atomic.Int64
		consumerErr atomic.Pointer[string]
		latencies   = make([]int64, 0, rate*measured) // nanoseconds; the consumer's until it ends
		malformed   int64
	)
	warmEndNs.Store(1<<63 - 1)
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for {
			fetches := consumer.PollFetches(guard.ctx)
			if guard.ctx.Err() != nil {
				return
			}
			for _, e := range fetches.Errors() {
				text := fmt.Sprintf("fetching %s partition %d: %v", e.Topic, e.Partition, e.Err)
				consumerErr.Store(&text)
				return
			}
			warmEnd := warmEndNs.Load()
			var n int64
			fetches.EachRecord(func(r *kgo.Record) {
				now := nowNs()
				n++
				if len(r.Value) < 8 {
					malformed++
					return
				}
				if stamp := int64(binary.BigEndian.Uint64(r.Value)); stamp >= warmEnd {
					latencies = append(latencies, now-stamp)
				}
			})
			guard.progress.Add(n)
			received.Add(n)
		}
	}()
	select {
	case <-watch.issued:
	case <-time.After(stallLimit):
		die("the consumer issued no Fetch in 60 s")
	}

	// The producer.
	producer := newClient(clientOptions(bootstrap)...)
	var sendFailed atomic.Int64
	var firstError atomic.Pointer[string]
	promise := func(_ *kgo.Record, err error) {
		if err != nil && sendFailed.Add(1) == 1 {
			text := err.Error()
			firstError.Store(&text)
		}
	}
	template := []byte(strings.Repeat("x", size))
	tick := time.NewTicker(time.Millisecond)
	firstCounted := rate * warmup // records due in the first W seconds are numbered below this
	t0 := time.Now()
	for sent := int64(0); sent < total; {
		// Records 0..due-1 are due: record i is due at t0 + i/R.
		due := min(total, int64(time.Since(t0))*rate/int64(time.Second)+1)
		for ; sent < due; sent++ {
			value := slices.Clone(template)
			stamp := nowNs()
			binary.BigEndian.PutUint64(value, uint64(stamp))
			if sent == firstCounted {
				// This record and every later one (stamped later) are counted.
				warmEndNs.Store(stamp)
			}
			producer.Produce(guard.ctx, &kgo.Record{Topic: topic, Value: value}, promise)
		}
		guard.progress.Add(1)
		if guard.stalled.Load() {
			die("no progress for 60 s: %d records sent, %d received", sent, received.Load())
		}
		if sent < total {
			<-tick.C
		}
	}
	tick.Stop()

	// Wait for every record to come back, or for the time allowed.
	deadline := time.Now().Add(drainLimit)
	for received.Load() < total && time.Now().Before(deadline) && consumerErr.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	guard.stop()
	<-consumerDone
	if e := consumerErr.Load(); e != nil {
		die("%s", *e)
	}
	producer.Close()
	consumer.Close()

	got := received.Load()
	slices.Sort(latencies)
	// The q-th quantile (q = perMille/1000) is the value at index ceil(q*n)-1, in µs.
	quantile := func(perMille int) string {
		n := len(latencies)
		if n == 0 {
			return "null"
		}
		at := (perMille*n+999)/1000 - 1
		return fmt.Sprintf("%.1f", float64(latencies[max(at, 0)])/1e3)
	}
	fmt.Printf("{\"client\":%q,\"sent\":%d,\"received\":%d,\"counted\":%d,\"lost\":%d,"+
		"\"p50_us\":%s,\"p99_us\":%s,\"p999_us\":%s,\"max_us\":%s,\"cpu_s\":%.3f}\n",
		clientName, total, got, len(latencies), max(total-got, 0),
		quantile(500), quantile(990), quantile(999), quantile(1000), cpuSeconds())
	if n := sendFailed.Load(); n > 0 {
		die("%d sends failed, the first with: %s", n, *firstError.Load())
	}
	if malformed > 0 {
		die("%d records had values shorter than the 8-byte stamp", malformed)
	}
}
