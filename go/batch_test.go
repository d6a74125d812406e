package kvfeed

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"
)

// Tests of the batched reads (one cgo call brings many events) and of the
// prompt cancellation through kvfeed_watcher_interrupt.

func TestBatchDeliversEverythingInOrder(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	const n = 3*batchSize + 7 // several full batches and a partial one
	for i := 0; i < n; i++ {
		if _, err := s.Put(b(fmt.Sprintf("k%d", i%10)), b(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var got []Event
	for i := 0; i < n; i++ {
		got = append(got, next(t, w))
	}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) || string(ev.Value) != fmt.Sprint(i) || string(ev.Key) != fmt.Sprintf("k%d", i%10) {
			t.Fatalf("event %d = %+v", i, ev)
		}
		if i >= 10 && string(ev.Old) != fmt.Sprint(i-10) {
			t.Fatalf("event %d: old %q, want %d", i, ev.Old, i-10)
		}
	}
	// Events of one batch do not share memory with each other or with the
	// watcher's later reads.
	got[0].Value[0] = 'X'
	if string(got[1].Value) != "1" {
		t.Fatalf("events share memory: %q", got[1].Value)
	}
	expectNothing(t, w)
}

func TestCursorCountsOnlyDeliveredEvents(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{Keys: [][]byte{b("a")}})
	for _, k := range []string{"a", "x", "a", "x", "x", "a"} { // a at seqs 1, 3, 6
		s.Put(b(k), b("v"))
	}
	checkCursor := func(want uint64) {
		t.Helper()
		if c, err := w.Cursor(); err != nil || c != want {
			t.Fatalf("Cursor = %d, %v; want %d", c, err, want)
		}
	}
	checkCursor(1)
	if ev := next(t, w); ev.Seq != 1 { // the library's cursor is already at 7
		t.Fatalf("seq %d", ev.Seq)
	}
	checkCursor(3) // seq 2 did not match: resuming at 3 loses nothing
	next(t, w)
	checkCursor(6)
	next(t, w)
	checkCursor(7)

	// A watcher resumed from a saved cursor continues exactly there.
	w2 := mustWatch(t, s, WatchOptions{Keys: [][]byte{b("a")}, Start: StartFrom, FromSeq: 3})
	if ev := next(t, w2); ev.Seq != 3 {
		t.Fatalf("resumed at seq %d, want 3", ev.Seq)
	}
}

func TestCursorDuringSnapshot(t *testing.T) {
	s := mustOpen(t, Options{})
	s.Put(b("a"), b("1"))
	s.Put(b("b"), b("1"))
	w := mustWatch(t, s, WatchOptions{Start: StartSnapshot})
	s.Put(b("c"), b("1")) // seq 3, live
	next(t, w)            // a snapshot item; the rest of the batch is pending
	if c, _ := w.Cursor(); c != 3 {
		t.Fatalf("Cursor during the snapshot = %d, want At+1 = 3", c)
	}
	next(t, w)
	if ev := next(t, w); ev.Kind != KindSnapshotDone || ev.At != 2 {
		t.Fatalf("want the marker, got %+v", ev)
	}
	if c, _ := w.Cursor(); c != 3 {
		t.Fatalf("Cursor after the marker = %d, want 3", c)
	}
	if ev := next(t, w); ev.Seq != 3 {
		t.Fatalf("live event seq %d", ev.Seq)
	}
	if c, _ := w.Cursor(); c != 4 {
		t.Fatalf("Cursor = %d, want 4", c)
	}
}

// Many cancellations of a blocked Next: each returns context.Canceled, and
// the watcher stays usable at the same cursor. The cancel-to-return latency
// is logged (p50/p99), not asserted; BenchmarkCancel measures it too.
func TestManyCancellations(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	lat := make([]time.Duration, 0, rounds)
	for i := 0; i < rounds; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		res := make(chan error, 1)
		var returned time.Time
		go func() {
			close(started)
			_, err := w.Next(ctx)
			returned = time.Now()
			res <- err
		}()
		<-started
		// Correct whenever the cancel lands (before or during the wait); a
		// short pause makes most of them land during the native wait, which
		// is the latency worth measuring.
		time.Sleep(200 * time.Microsecond)
		at := time.Now()
		cancel()
		err, _ := waitErr(t, res)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Next after cancel: %v", i, err)
		}
		lat = append(lat, returned.Sub(at))
	}
	p50, p99 := percentiles(lat)
	t.Logf("cancel -> Next returns over %d cancellations: p50 %v, p99 %v, max %v", rounds, p50, p99, lat[len(lat)-1])
	if c, _ := w.Cursor(); c != 1 {
		t.Fatalf("cursor moved to %d", c)
	}
	seq, _ := s.Put(b("k"), b("v"))
	checkEvent(t, next(t, w), seq, KindCreate, "k", b("v"), nil)
}

// Cancellations racing a writer lose and duplicate nothing.
func TestCancellationsWhileWriting(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	const n = 20000
	go func() {
		for i := 0; i < n; i++ {
			s.Put(b(fmt.Sprintf("k%d", i%7)), b(fmt.Sprint(i)))
		}
	}()
	var want uint64 = 1
	cancels := 0
	for want <= n {
		ctx, cancel := context.WithCancel(context.Background())
		if want%3 == 0 {
			cancel() // already cancelled: returns ctx.Err() or a buffered event
		} else {
			go cancel() // races the read
		}
		ev, err := w.Next(ctx)
		cancel()
		switch {
		case err == nil:
			if ev.Seq != want || string(ev.Value) != fmt.Sprint(want-1) {
				t.Fatalf("got seq %d value %q, want seq %d", ev.Seq, ev.Value, want)
			}
			want++
		case errors.Is(err, context.Canceled):
			cancels++
		default:
			t.Fatalf("Next: %v", err)
		}
	}
	t.Logf("%d events, %d cancelled reads", n, cancels)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[len(d)*99/100]
}
