package kvfeed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The tests in this file check the spec's guarantees on what the Go side
// actually received, while goroutine writers run: total order, per-key
// old/value chaining, exact lag accounting (every write is delivered once or
// counted in a lag), and snapshot + live without gap or duplicate.

type write struct{ key, value string }

// runWriters starts n goroutines each doing perWriter puts (alternating an
// own key and a key shared by all writers) and returns the log of every
// write by the seq Put returned.
func runWriters(t *testing.T, s *Store, n, perWriter int) map[uint64]write {
	var wg sync.WaitGroup
	logs := make([][]struct {
		seq uint64
		w   write
	}, n)
	for g := 0; g < n; g++ {
		g := g
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				key := fmt.Sprintf("w%d/%d", g, i%16)
				if i%2 == 1 {
					key = fmt.Sprintf("shared/%d", i%8)
				}
				val := fmt.Sprintf("g%d-%d", g, i)
				seq, err := s.Put([]byte(key), []byte(val))
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				logs[g] = append(logs[g], struct {
					seq uint64
					w   write
				}{seq, write{key, val}})
			}
		}()
	}
	wg.Wait()
	all := make(map[uint64]write)
	for _, l := range logs {
		for _, e := range l {
			if _, dup := all[e.seq]; dup {
				t.Fatalf("seq %d returned by two puts", e.seq)
			}
			all[e.seq] = e.w
		}
	}
	return all
}

type lagRec struct {
	before uint64 // the watcher's cursor before the lag (0 if unknown)
	last   uint64 // seq of the last event delivered before the lag
	LaggedError
}

type received struct {
	events []Event
	lags   []lagRec
	cursor uint64 // after the final ErrClosed (0 if unknown)
	err    error
}

// consumeNext reads w with Next until ErrClosed, recording the cursor before
// every read so each lag's count can be checked exactly.
func consumeNext(w *Watcher, start <-chan struct{}) *received {
	if start != nil {
		<-start
	}
	r := &received{}
	ctx := context.Background()
	for {
		before, err := w.Cursor()
		if err != nil {
			r.err = err
			return r
		}
		ev, err := w.Next(ctx)
		var lag *LaggedError
		switch {
		case err == nil:
			r.events = append(r.events, ev)
		case errors.As(err, &lag):
			r.lags = append(r.lags, lagRec{before: before, last: lastSeq(r), LaggedError: *lag})
		case errors.Is(err, ErrClosed):
			r.cursor, _ = w.Cursor()
			return r
		default:
			r.err = err
			return r
		}
	}
}

// consumeEvents reads w through Events channels, starting a new one after
// every lag, until ErrClosed.
func consumeEvents(w *Watcher) *received {
	r := &received{}
	for {
		for ev := range w.Events(context.Background()) {
			r.events = append(r.events, ev)
		}
		var lag *LaggedError
		switch err := w.Err(); {
		case errors.As(err, &lag):
			r.lags = append(r.lags, lagRec{last: lastSeq(r), LaggedError: *lag})
		case errors.Is(err, ErrClosed):
			r.cursor, _ = w.Cursor()
			return r
		default:
			r.err = err
			return r
		}
	}
}

func lastSeq(r *received) uint64 {
	if len(r.events) == 0 {
		return 0
	}
	return r.events[len(r.events)-1].Seq
}

// verify checks what one watcher received against the write log.
func verify(t *testing.T, name string, r *received, log map[uint64]write, head uint64, match func(string) bool) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: ended with %v", name, r.err)
	}
	// prev[seq] = the value the key had before the write at seq ("" + false if none).
	seqs := make([]uint64, 0, len(log))
	for s := range log {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	type prevVal struct {
		v  string
		ok bool
	}
	prev := make(map[uint64]prevVal, len(log))
	lastByKey := map[string]string{}
	for _, s := range seqs {
		w := log[s]
		v, ok := lastByKey[w.key]
		prev[s] = prevVal{v, ok}
		lastByKey[w.key] = w.value
	}

	delivered := make(map[uint64]bool, len(r.events))
	var missed uint64
	lastSeen := map[string][]byte{} // per key, the last value this watcher received (reset on lag)
	li := 0
	var last uint64
	for _, ev := range r.events {
		for li < len(r.lags) && r.lags[li].last == last {
			lag := r.lags[li]
			if ev.Seq < lag.ResumeAt {
				t.Fatalf("%s: event seq %d after a lag resuming at %d", name, ev.Seq, lag.ResumeAt)
			}
			lastSeen = map[string][]byte{}
			li++
		}
		// 1. Total order.
		if ev.Seq <= last {
			t.Fatalf("%s: seq %d after %d", name, ev.Seq, last)
		}
		last = ev.Seq
		w, ok := log[ev.Seq]
		if !ok {
			t.Fatalf("%s: seq %d is no write", name, ev.Seq)
		}
		// Content is the write's, and matches the filter.
		if string(ev.Key) != w.key || string(ev.Value) != w.value || ev.Value == nil || !match(w.key) {
			t.Fatalf("%s: seq %d = %q=%q, write was %q=%q", name, ev.Seq, ev.Key, ev.Value, w.key, w.value)
		}
		// 2. Per-key consistency: old is the previous write's value.
		p := prev[ev.Seq]
		if p.ok != (ev.Old != nil) || string(ev.Old) != p.v {
			t.Fatalf("%s: seq %d key %q old %q, previous write %q (present %v)", name, ev.Seq, w.key, ev.Old, p.v, p.ok)
		}
		if (p.ok && ev.Kind != KindUpdate) || (!p.ok && ev.Kind != KindCreate) {
			t.Fatalf("%s: seq %d kind %v, key present before: %v", name, ev.Seq, ev.Kind, p.ok)
		}
		// ... and chains with what this watcher itself received.
		if v, ok := lastSeen[w.key]; ok && !bytes.Equal(ev.Old, v) {
			t.Fatalf("%s: seq %d old %q, last received value %q", name, ev.Seq, ev.Old, v)
		}
		lastSeen[w.key] = ev.Value
		delivered[ev.Seq] = true
	}
	// 3. Lag accounting: exact counts, and every matching write delivered
	// or inside a lagged range.
	inLag := func(s uint64) bool {
		for _, l := range r.lags {
			if s > l.last && s < l.ResumeAt {
				return true
			}
		}
		return false
	}
	for _, l := range r.lags {
		missed += l.Missed
		if l.before != 0 {
			// Within the Next that lagged, the watcher may first have passed
			// over events it does not match (or skip markers), so the
			// cursor at the lap was resume_at - missed >= before, and
			// nothing it matches may lie in [before, resume_at - missed).
			// For an unfiltered watcher without skip markers this is
			// missed == resume_at - before exactly.
			if l.Missed > l.ResumeAt-l.before {
				t.Fatalf("%s: lag %+v: missed > resume_at - cursor (%d)", name, l.LaggedError, l.before)
			}
			for s := l.before; s < l.ResumeAt-l.Missed; s++ {
				if w, ok := log[s]; ok && match(w.key) {
					t.Fatalf("%s: lag %+v: matching write seq %d passed over silently (cursor was %d)", name, l.LaggedError, s, l.before)
				}
			}
		}
		if l.Missed == 0 || l.Missed > l.ResumeAt-(l.last+1) {
			t.Fatalf("%s: lag %+v after seq %d: impossible count", name, l.LaggedError, l.last)
		}
	}
	for s, w := range log {
		if match(w.key) && !delivered[s] && !inLag(s) {
			t.Fatalf("%s: write seq %d (%q) neither delivered nor counted in a lag", name, s, w.key)
		}
	}
	if r.cursor != 0 && r.cursor != head+1 {
		t.Fatalf("%s: final cursor %d, want %d", name, r.cursor, head+1)
	}
	t.Logf("%s: delivered %d + missed %d (in %d lags); head %d, writes %d",
		name, len(r.events), missed, len(r.lags), head, len(log))
}

func TestConcurrentWritersAndWatchers(t *testing.T) {
	const writers, perWriter = 4, 2500
	for _, tc := range []struct {
		name     string
		capacity uint64
	}{
		{"roomy", 1 << 16}, // 10000 writes never wrap the ring: no lag possible
		{"lapping", 64},    // watchers get lapped; the paused one always is
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Options{Capacity: tc.capacity})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			all := func(string) bool { return true }
			shared := func(k string) bool { return strings.HasPrefix(k, "shared/") }

			type consumer struct {
				name  string
				match func(string) bool
				res   chan *received
			}
			var cs []consumer
			startPaused := make(chan struct{})
			add := func(name string, o WatchOptions, match func(string) bool, run func(*Watcher) *received) {
				w := mustWatch(t, s, o)
				c := consumer{name, match, make(chan *received, 1)}
				go func() { c.res <- run(w) }()
				cs = append(cs, c)
			}
			add("all/Next", WatchOptions{}, all, func(w *Watcher) *received { return consumeNext(w, nil) })
			add("shared/Next", WatchOptions{Prefixes: [][]byte{[]byte("shared/")}}, shared,
				func(w *Watcher) *received { return consumeNext(w, nil) })
			add("all/Events", WatchOptions{}, all, consumeEvents)
			add("all/paused", WatchOptions{}, all, func(w *Watcher) *received { return consumeNext(w, startPaused) })

			log := runWriters(t, s, writers, perWriter)
			head, _ := s.Head()
			if uint64(len(log)) > head {
				t.Fatalf("%d writes but head %d", len(log), head)
			}
			// get returns the value and version of each key's latest write.
			latest := map[string]uint64{}
			for seq, w := range log {
				if seq > latest[w.key] {
					latest[w.key] = seq
				}
			}
			for k, seq := range latest {
				v, ver, err := s.Get([]byte(k))
				if err != nil || ver != seq || string(v) != log[seq].value {
					t.Fatalf("Get(%q) = %q, %d, %v; want %q, %d", k, v, ver, err, log[seq].value, seq)
				}
			}
			close(startPaused)
			s.Close() // watchers drain what is left, then get ErrClosed
			for _, c := range cs {
				r := <-c.res
				verify(t, c.name, r, log, head, c.match)
				if tc.capacity >= uint64(writers*perWriter) && len(r.lags) != 0 {
					t.Fatalf("%s: lagged although the ring never wrapped", c.name)
				}
				if c.name == "all/paused" && tc.capacity < uint64(writers*perWriter) && len(r.lags) == 0 {
					t.Fatalf("%s: a watcher that read nothing while the ring wrapped did not lag", c.name)
				}
			}
		})
	}
}

// Guarantee 6 through the binding: a snapshot taken while writers run, plus
// the live events after it, rebuilds exactly the store's final state.
func TestSnapshotWhileWriting(t *testing.T) {
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, perWriter, nkeys = 3, 3000, 32
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		g := g
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				k := []byte(fmt.Sprintf("k%d", (i*7+g)%nkeys))
				if i%5 == 4 {
					if _, err := s.Delete(k); err != nil && !errors.Is(err, ErrNotFound) {
						t.Errorf("Delete: %v", err)
					}
					continue
				}
				if _, err := s.Put(k, []byte(fmt.Sprintf("g%d-%d", g, i))); err != nil {
					t.Errorf("Put: %v", err)
				}
			}
		}()
	}
	// Take the snapshot once the writers are well under way (polling Head
	// is the synchronisation; no sleep).
	for {
		h, _ := s.Head()
		if h >= writers*perWriter/4 {
			break
		}
	}
	w := mustWatch(t, s, WatchOptions{Start: StartSnapshot})
	wg.Wait()

	// The store's final state.
	want := map[string]string{}
	for i := 0; i < nkeys; i++ {
		k := fmt.Sprintf("k%d", i)
		if v, _, err := s.Get([]byte(k)); err == nil {
			want[k] = string(v)
		}
	}
	s.Close()

	view := map[string]string{}
	snapVersion := map[string]uint64{}
	var marker *Event
	var last uint64
	for {
		ev, err := w.Next(context.Background())
		if errors.Is(err, ErrClosed) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		switch {
		case marker == nil && ev.Kind == KindSnapshotDone:
			e := ev
			marker = &e
			last = ev.At
			if ev.ConsistentAt < ev.At {
				t.Fatalf("marker %+v", ev)
			}
		case marker == nil:
			if ev.Kind != KindCreate || ev.Old != nil || ev.Value == nil {
				t.Fatalf("snapshot event %+v", ev)
			}
			if _, dup := view[string(ev.Key)]; dup {
				t.Fatalf("key %q twice in the snapshot", ev.Key)
			}
			view[string(ev.Key)] = string(ev.Value)
			snapVersion[string(ev.Key)] = ev.Seq
		default:
			if ev.Seq <= last {
				t.Fatalf("live seq %d after %d (marker at %d)", ev.Seq, last, marker.At)
			}
			last = ev.Seq
			if v, ok := snapVersion[string(ev.Key)]; ok && ev.Seq <= v {
				t.Fatalf("live event seq %d already reflected by the snapshot (version %d)", ev.Seq, v)
			}
			cur, present := view[string(ev.Key)]
			if ev.Kind == KindDelete {
				delete(view, string(ev.Key))
			} else {
				view[string(ev.Key)] = string(ev.Value)
			}
			// Once past consistent_at the view is exact, so old chains.
			if ev.Seq > marker.ConsistentAt && (present != (ev.Old != nil) || cur != string(ev.Old)) {
				t.Fatalf("seq %d key %q: old %q, view had %q (present %v)", ev.Seq, ev.Key, ev.Old, cur, present)
			}
		}
	}
	if marker == nil {
		t.Fatal("no SnapshotDone marker")
	}
	if len(view) != len(want) {
		t.Fatalf("view has %d keys, store %d", len(view), len(want))
	}
	for k, v := range want {
		if view[k] != v {
			t.Fatalf("key %q: view %q, store %q", k, view[k], v)
		}
	}
	t.Logf("snapshot at %d..%d, %d keys in the snapshot, final seq %d", marker.At, marker.ConsistentAt, len(snapVersion), last)
}
