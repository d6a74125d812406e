package kvfeed

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// blockedNext runs w.Next(ctx) in a goroutine and returns its result channel.
// The caller then sleeps briefly so that Next is likely blocked in the
// library when it acts; every test below is correct whether or not Next has
// started by then (a Next that starts after the cancel or close returns the
// same error at once).
func blockedNext(w *Watcher, ctx context.Context) <-chan error {
	res := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		res <- err
	}()
	return res
}

func waitErr(t *testing.T, res <-chan error) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case err := <-res:
		return err, time.Since(start)
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return within 10s")
		return nil, 0
	}
}

func TestCancelWakesBlockedNext(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	res := blockedNext(w, ctx)
	time.Sleep(50 * time.Millisecond) // let Next block (not needed for correctness)
	cancel()
	err, took := waitErr(t, res)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	t.Logf("cancellation noticed after %v", took) // measured, not asserted (see TestManyCancellations)
	// The watcher is still usable and lost nothing.
	seq, _ := s.Put(b("k"), b("v"))
	checkEvent(t, next(t, w), seq, KindCreate, "k", b("v"), nil)
}

func TestDeadlineOnBlockedNext(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := w.Next(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v", err)
	}
	if took < 90*time.Millisecond { // not before the deadline (how long after is measured elsewhere)
		t.Fatalf("Next with a 100ms deadline returned after %v", took)
	}
	seq, _ := s.Put(b("k"), b("v"))
	checkEvent(t, next(t, w), seq, KindCreate, "k", b("v"), nil)
}

func TestCancelledContextDoesNotBlock(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: %v", err)
	}
}

func TestCloseWakesBlockedNext(t *testing.T) {
	s := mustOpen(t, Options{})
	w, err := s.Watch(WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// context.Background: Next waits in one uninterrupted native call, which
	// only kvfeed_watcher_close can end.
	res := blockedNext(w, context.Background())
	time.Sleep(50 * time.Millisecond)
	w.Close()
	err, took := waitErr(t, res)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v after %v", err, took)
	}
}

func TestStoreCloseWakesBlockedNext(t *testing.T) {
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := mustWatch(t, s, WatchOptions{})
	res := blockedNext(w, context.Background())
	time.Sleep(50 * time.Millisecond)
	s.Close()
	if err, took := waitErr(t, res); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after store Close: %v after %v", err, took)
	}
}

func TestEventsChannel(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := w.Events(ctx)
	for i := 1; i <= 100; i++ {
		if _, err := s.Put(b(fmt.Sprint("k", i%7)), b(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 100; i++ {
		ev := <-ch
		if ev.Seq != uint64(i) || string(ev.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	if w.Err() != nil {
		t.Fatalf("Err while open: %v", w.Err())
	}
	cancel()
	for ev := range ch {
		t.Fatalf("unexpected event after cancel: %+v", ev)
	}
	if !errors.Is(w.Err(), context.Canceled) {
		t.Fatalf("Err after cancel: %v", w.Err())
	}
}

// A lag closes the channel with a *LaggedError; Events again resumes at
// ResumeAt.
func TestEventsChannelLag(t *testing.T) {
	s := mustOpen(t, Options{Capacity: 8})
	w := mustWatch(t, s, WatchOptions{})
	for i := 1; i <= 20; i++ {
		if _, err := s.Put(b("k"), b(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for ev := range w.Events(ctx) {
		t.Fatalf("event before the lag: %+v", ev)
	}
	var lag *LaggedError
	if !errors.As(w.Err(), &lag) || lag.Missed != lag.ResumeAt-1 {
		t.Fatalf("Err = %v, want *LaggedError with missed = resume_at - 1", w.Err())
	}
	ch := w.Events(ctx)
	for want := lag.ResumeAt; want <= 20; want++ {
		if ev := <-ch; ev.Seq != want {
			t.Fatalf("after lag: seq %d, want %d", ev.Seq, want)
		}
	}
	if uint64(20-lag.ResumeAt+1)+lag.Missed != 20 {
		t.Fatalf("delivered + missed != 20")
	}
	s.Close()
	for ev := range ch {
		t.Fatalf("event after store close: %+v", ev)
	}
	if !errors.Is(w.Err(), ErrClosed) {
		t.Fatalf("Err after store close: %v", w.Err())
	}
}

// Cancelling an Events channel loses nothing and keeps the order, even when
// the consumer goes on reading the channel after the cancel: what was read
// but not handed over is returned by the next Next or Events.
func TestEventsCancelPutsBack(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	const n = 2000
	for i := 1; i <= n; i++ {
		if _, err := s.Put(b("k"), b(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	for round := 0; len(got) < n-50; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		ch := w.Events(ctx)
		for i := 0; i < round%7; i++ {
			got = append(got, (<-ch).Seq)
		}
		cancel()
		for ev := range ch { // an event may still be handed over after cancel
			got = append(got, ev.Seq)
		}
		if !errors.Is(w.Err(), context.Canceled) {
			t.Fatalf("Err: %v", w.Err())
		}
		if round%3 == 0 {
			got = append(got, next(t, w).Seq)
		}
	}
	for len(got) < n {
		got = append(got, next(t, w).Seq)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, seq)
		}
	}
	expectNothing(t, w)
}

func TestEventsWatcherClose(t *testing.T) {
	s := mustOpen(t, Options{})
	w, err := s.Watch(WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ch := w.Events(context.Background())
	s.Put(b("k"), b("v"))
	if ev := <-ch; ev.Seq != 1 {
		t.Fatalf("%+v", ev)
	}
	w.Close()
	for range ch {
	}
	if !errors.Is(w.Err(), ErrClosed) {
		t.Fatalf("Err after Close: %v", w.Err())
	}
}
