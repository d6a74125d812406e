package kvfeed

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func b(s string) []byte { return []byte(s) }

func mustOpen(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open(%+v): %v", o, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustWatch(t testing.TB, s *Store, o WatchOptions) *Watcher {
	t.Helper()
	w, err := s.Watch(o)
	if err != nil {
		t.Fatalf("Watch(%+v): %v", o, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// next reads one event with a generous timeout, failing the test on error.
func next(t testing.TB, w *Watcher) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

// expectNothing checks that no event is pending (a short poll, which is
// correct whatever the timing since nothing is being written).
func expectNothing(t testing.TB, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if ev, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expected no event, got %+v, %v", ev, err)
	}
}

func checkEvent(t testing.TB, ev Event, seq uint64, kind Kind, key string, value, old []byte) {
	t.Helper()
	if ev.Seq != seq || ev.Kind != kind || string(ev.Key) != key {
		t.Fatalf("event = {seq %d %v %q}, want {seq %d %v %q}", ev.Seq, ev.Kind, ev.Key, seq, kind, key)
	}
	if (ev.Value == nil) != (value == nil) || !bytes.Equal(ev.Value, value) {
		t.Fatalf("seq %d: value = %q (nil %v), want %q (nil %v)", seq, ev.Value, ev.Value == nil, value, value == nil)
	}
	if (ev.Old == nil) != (old == nil) || !bytes.Equal(ev.Old, old) {
		t.Fatalf("seq %d: old = %q (nil %v), want %q (nil %v)", seq, ev.Old, ev.Old == nil, old, old == nil)
	}
}

func TestVersion(t *testing.T) {
	v := Version()
	if v == "" {
		t.Fatal("empty version")
	}
	t.Logf("library version %s, header %s", v, HeaderVersion())
	if err := checkVersion(); err != nil {
		t.Fatal(err)
	}
}

func TestPutGetDeleteAndEvents(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})

	if h, err := s.Head(); err != nil || h != 0 {
		t.Fatalf("Head = %d, %v; want 0", h, err)
	}
	seq, err := s.Put(b("a"), b("1"))
	if err != nil || seq != 1 {
		t.Fatalf("Put = %d, %v; want 1", seq, err)
	}
	if seq, err = s.Put(b("a"), b("2")); err != nil || seq != 2 {
		t.Fatalf("Put = %d, %v; want 2", seq, err)
	}
	v, ver, err := s.Get(b("a"))
	if err != nil || string(v) != "2" || ver != 2 {
		t.Fatalf("Get = %q, %d, %v", v, ver, err)
	}
	// Empty value is a value (non-nil, empty), empty key is a key.
	if _, err = s.Put(b(""), b("")); err != nil {
		t.Fatal(err)
	}
	v, ver, err = s.Get(nil)
	if err != nil || v == nil || len(v) != 0 || ver != 3 {
		t.Fatalf("Get(empty) = %q (nil %v), %d, %v", v, v == nil, ver, err)
	}
	if seq, err = s.Delete(b("a")); err != nil || seq != 4 {
		t.Fatalf("Delete = %d, %v; want 4", seq, err)
	}
	if h, err := s.Head(); err != nil || h != 4 {
		t.Fatalf("Head = %d, %v; want 4", h, err)
	}

	checkEvent(t, next(t, w), 1, KindCreate, "a", b("1"), nil)
	checkEvent(t, next(t, w), 2, KindUpdate, "a", b("2"), b("1"))
	ev := next(t, w)
	checkEvent(t, ev, 3, KindCreate, "", b(""), nil)
	if !ev.HasValue() || ev.HasOld() || ev.Key == nil {
		t.Fatalf("empty create: HasValue %v HasOld %v key nil %v", ev.HasValue(), ev.HasOld(), ev.Key == nil)
	}
	ev = next(t, w)
	checkEvent(t, ev, 4, KindDelete, "a", nil, b("2"))
	if ev.HasValue() || !ev.HasOld() {
		t.Fatalf("delete: HasValue %v HasOld %v", ev.HasValue(), ev.HasOld())
	}
	// The copy is the caller's: appending to Key must not touch Old.
	_ = append(ev.Key, 'X')
	if string(ev.Old) != "2" {
		t.Fatalf("Old clobbered by append to Key: %q", ev.Old)
	}
	if c, err := w.Cursor(); err != nil || c != 5 {
		t.Fatalf("Cursor = %d, %v; want 5", c, err)
	}
	expectNothing(t, w)
}

func TestNotFound(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	if _, _, err := s.Get(b("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get absent: %v", err)
	}
	if _, err := s.Delete(b("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete absent: %v", err)
	}
	if n, err := s.DeletePrefix(b("nope")); err != nil || n != 0 {
		t.Fatalf("DeletePrefix absent = %d, %v", n, err)
	}
	if h, _ := s.Head(); h != 0 {
		t.Fatalf("deleting absent keys emitted events: head %d", h)
	}
	expectNothing(t, w)
}

func TestDeletePrefix(t *testing.T) {
	s := mustOpen(t, Options{})
	for _, k := range []string{"user/1", "user/2", "user/3", "cfg/x", "use"} {
		if _, err := s.Put(b(k), b("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	w := mustWatch(t, s, WatchOptions{})
	n, err := s.DeletePrefix(b("user/"))
	if err != nil || n != 3 {
		t.Fatalf("DeletePrefix = %d, %v; want 3", n, err)
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		ev := next(t, w)
		if ev.Kind != KindDelete || ev.Value != nil || string(ev.Old) != "v-"+string(ev.Key) {
			t.Fatalf("bad delete event %+v", ev)
		}
		seen[string(ev.Key)] = true
	}
	if !seen["user/1"] || !seen["user/2"] || !seen["user/3"] {
		t.Fatalf("deleted %v", seen)
	}
	for _, k := range []string{"cfg/x", "use"} {
		if _, _, err := s.Get(b(k)); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	expectNothing(t, w)
}

func TestCompareAndPut(t *testing.T) {
	s := mustOpen(t, Options{})
	// 0 = only if absent.
	seq, err := s.CompareAndPut(b("k"), 0, b("a"))
	if err != nil || seq != 1 {
		t.Fatalf("CAS create = %d, %v", seq, err)
	}
	_, err = s.CompareAndPut(b("k"), 0, b("b"))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.CurrentVersion != 1 || !errors.Is(err, ErrConflict) {
		t.Fatalf("CAS on existing with 0: %v", err)
	}
	_, err = s.CompareAndPut(b("k"), 7, b("b"))
	if !errors.As(err, &ce) || ce.CurrentVersion != 1 {
		t.Fatalf("CAS wrong version: %v", err)
	}
	if seq, err = s.CompareAndPut(b("k"), 1, b("b")); err != nil {
		t.Fatalf("CAS right version: %v", err)
	}
	if v, ver, _ := s.Get(b("k")); string(v) != "b" || ver != seq {
		t.Fatalf("Get after CAS = %q, %d (want b, %d)", v, ver, seq)
	}
	_, err = s.CompareAndPut(b("absent"), 3, b("x"))
	if !errors.As(err, &ce) || ce.CurrentVersion != 0 {
		t.Fatalf("CAS on absent with nonzero version: %v", err)
	}
	if _, _, err := s.Get(b("absent")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed CAS created the key: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	s := mustOpen(t, Options{MaxKeyLen: 8, MaxValueLen: 16})
	w := mustWatch(t, s, WatchOptions{})
	okKey, bigKey := b("12345678"), b("123456789")
	okVal, bigVal := bytes.Repeat(b("v"), 16), bytes.Repeat(b("v"), 17)
	if _, err := s.Put(bigKey, okVal); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put big key: %v", err)
	}
	if _, err := s.Put(okKey, bigVal); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put big value: %v", err)
	}
	if _, err := s.CompareAndPut(okKey, 0, bigVal); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CAS big value: %v", err)
	}
	if _, err := s.CompareAndPut(bigKey, 0, okVal); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CAS big key: %v", err)
	}
	if h, _ := s.Head(); h != 0 {
		t.Fatalf("rejected writes changed head: %d", h)
	}
	if _, _, err := s.Get(okKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejected write stored the key: %v", err)
	}
	// Filter keys and prefixes are bounded by the same maximum.
	if _, err := s.Watch(WatchOptions{Keys: [][]byte{bigKey}}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Watch with a big key: %v", err)
	}
	if _, err := s.Watch(WatchOptions{Prefixes: [][]byte{bigKey}}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Watch with a big prefix: %v", err)
	}
	if _, err := s.Put(okKey, okVal); err != nil {
		t.Fatalf("Put at the limits: %v", err)
	}
	checkEvent(t, next(t, w), 1, KindCreate, "12345678", okVal, nil)
}

func TestInvalidOptions(t *testing.T) {
	for _, c := range []uint64{1, 3, 6, 100} {
		if s, err := Open(Options{Capacity: c}); !errors.Is(err, ErrInvalidArg) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(capacity %d): %v, want ErrInvalidArg", c, err)
		}
	}
	if _, err := Open(Options{Capacity: MaxCapacity * 2}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Open(capacity %d): %v, want ErrTooLarge", uint64(MaxCapacity*2), err)
	}
	for _, c := range []uint64{0, 2, 1024} {
		s, err := Open(Options{Capacity: c})
		if err != nil {
			t.Errorf("Open(capacity %d): %v", c, err)
			continue
		}
		s.Close()
	}
	s := mustOpen(t, Options{})
	for _, o := range []WatchOptions{
		{Kinds: KindSnapshotDone},
		{Kinds: KindCreate | 0x100},
		{Start: 3},
		{Start: 99, FromSeq: 1},
	} {
		if w, err := s.Watch(o); !errors.Is(err, ErrInvalidArg) {
			if w != nil {
				w.Close()
			}
			t.Errorf("Watch(%+v): %v, want ErrInvalidArg", o, err)
		}
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(b("k"), b("v")); err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(WatchOptions{Start: StartFrom, FromSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Put(b("k"), b("v")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put: %v", err)
	}
	if _, _, err := s.Get(b("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.Delete(b("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete: %v", err)
	}
	if _, err := s.DeletePrefix(b("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("DeletePrefix: %v", err)
	}
	if _, err := s.CompareAndPut(b("k"), 0, b("v")); !errors.Is(err, ErrClosed) {
		t.Errorf("CompareAndPut: %v", err)
	}
	if _, err := s.Head(); !errors.Is(err, ErrClosed) {
		t.Errorf("Head: %v", err)
	}
	if _, err := s.Watch(WatchOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch: %v", err)
	}
	// The watcher drains what is left, then reports Closed, and stays so.
	checkEvent(t, next(t, w), 1, KindCreate, "k", b("v"), nil)
	for i := 0; i < 2; i++ {
		if _, err := w.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after store close: %v", err)
		}
	}
}

func TestClosedWatcher(t *testing.T) {
	s := mustOpen(t, Options{})
	w, err := s.Watch(WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(b("k"), b("v")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.Close()
	if _, err := w.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := w.Cursor(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Cursor after Close: %v", err)
	}
	// The store is unaffected.
	if _, err := s.Put(b("k"), b("w")); err != nil {
		t.Fatal(err)
	}
}

// Handles dropped without Close are freed by their finalizers (a safety net;
// the run checks that this neither crashes nor races).
func TestFinalizerBackstop(t *testing.T) {
	for i := 0; i < 10; i++ {
		s, err := Open(Options{Capacity: 16})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.Watch(WatchOptions{Keys: [][]byte{b("k")}})
		if err != nil {
			t.Fatal(err)
		}
		s.Put(b("k"), b("v"))
		_ = w
	}
	runtime.GC()
	runtime.GC()
}

func TestSuppressUnchanged(t *testing.T) {
	s := mustOpen(t, Options{SuppressUnchanged: true})
	w := mustWatch(t, s, WatchOptions{})
	seq1, _ := s.Put(b("k"), b("v"))
	seq2, err := s.Put(b("k"), b("v"))
	if err != nil || seq2 != seq1 {
		t.Fatalf("unchanged put = %d, %v; want current version %d", seq2, err, seq1)
	}
	seq3, _ := s.Put(b("k"), b("w"))
	checkEvent(t, next(t, w), seq1, KindCreate, "k", b("v"), nil)
	checkEvent(t, next(t, w), seq3, KindUpdate, "k", b("w"), b("v"))
	expectNothing(t, w)
}

func TestFilters(t *testing.T) {
	s := mustOpen(t, Options{})
	byKey := mustWatch(t, s, WatchOptions{Keys: [][]byte{b("a"), b("")}})
	byPrefix := mustWatch(t, s, WatchOptions{Prefixes: [][]byte{b("p/"), b("q/")}})
	both := mustWatch(t, s, WatchOptions{Keys: [][]byte{b("a")}, Prefixes: [][]byte{b("p/")}})
	deletes := mustWatch(t, s, WatchOptions{Kinds: KindDelete})
	updDel := mustWatch(t, s, WatchOptions{Prefixes: [][]byte{b("p/")}, Kinds: KindUpdate | KindDelete})

	for _, op := range []struct{ k, v string }{
		{"a", "1"}, {"b", "1"}, {"p/1", "1"}, {"q/1", "1"}, {"", "e"}, {"p/1", "2"}, {"pp", "1"}, {"a", "2"},
	} {
		if _, err := s.Put(b(op.k), b(op.v)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "p/1", "b"} {
		if _, err := s.Delete(b(k)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(w *Watcher, n int) (got []string) {
		for i := 0; i < n; i++ {
			ev := next(t, w)
			got = append(got, ev.Kind.String()+":"+string(ev.Key))
		}
		expectNothing(t, w)
		return got
	}
	eq := func(name string, got []string, want ...string) {
		if len(got) != len(want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: got %v, want %v", name, got, want)
				return
			}
		}
	}
	eq("keys", read(byKey, 4), "Create:a", "Create:", "Update:a", "Delete:a")
	eq("prefixes", read(byPrefix, 4), "Create:p/1", "Create:q/1", "Update:p/1", "Delete:p/1")
	eq("keys+prefix", read(both, 6), "Create:a", "Create:p/1", "Update:p/1", "Update:a", "Delete:a", "Delete:p/1")
	eq("deletes", read(deletes, 3), "Delete:a", "Delete:p/1", "Delete:b")
	eq("update|delete on p/", read(updDel, 2), "Update:p/1", "Delete:p/1")
}

func TestStartFromAndLagAtStart(t *testing.T) {
	s := mustOpen(t, Options{Capacity: 8})
	for i := 0; i < 5; i++ {
		if _, err := s.Put(b("k"), []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	w := mustWatch(t, s, WatchOptions{Start: StartFrom, FromSeq: 3})
	checkEvent(t, next(t, w), 3, KindUpdate, "k", b("2"), b("1"))
	// FromSeq 0 is treated as 1.
	w0 := mustWatch(t, s, WatchOptions{Start: StartFrom})
	checkEvent(t, next(t, w0), 1, KindCreate, "k", b("0"), nil)

	for i := 5; i < 20; i++ {
		if _, err := s.Put(b("k"), []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Head is 20 and the ring holds 8: seq 1 was overwritten.
	w1 := mustWatch(t, s, WatchOptions{Start: StartFrom, FromSeq: 1})
	_, err := w1.Next(context.Background())
	var lag *LaggedError
	if !errors.As(err, &lag) || !errors.Is(err, ErrLagged) {
		t.Fatalf("Next from overwritten seq: %v", err)
	}
	if lag.ResumeAt < 13 || lag.ResumeAt > 20 || lag.Missed != lag.ResumeAt-1 {
		t.Fatalf("lag %+v: want missed == resume_at-1 with resume_at in [13, 20]", lag)
	}
	if c, _ := w1.Cursor(); c != lag.ResumeAt {
		t.Fatalf("cursor after lag %d, want %d", c, lag.ResumeAt)
	}
	// It continues from ResumeAt.
	ev := next(t, w1)
	if ev.Seq != lag.ResumeAt {
		t.Fatalf("after lag got seq %d, want %d", ev.Seq, lag.ResumeAt)
	}
}

func TestSnapshotStart(t *testing.T) {
	s := mustOpen(t, Options{})
	want := map[string]uint64{}
	for i, k := range []string{"a", "b", "c", "x"} {
		seq, err := s.Put(b(k), []byte{byte('0' + i)})
		if err != nil {
			t.Fatal(err)
		}
		want[k] = seq
	}
	seq, _ := s.Put(b("b"), b("B"))
	want["b"] = seq
	if _, err := s.Delete(b("c")); err != nil {
		t.Fatal(err)
	}
	delete(want, "c")
	head, _ := s.Head()

	w := mustWatch(t, s, WatchOptions{Start: StartSnapshot, Keys: [][]byte{b("a"), b("b"), b("c")}})
	all := mustWatch(t, s, WatchOptions{Start: StartSnapshot})
	for _, tc := range []struct {
		w    *Watcher
		keys []string
	}{{w, []string{"a", "b"}}, {all, []string{"a", "b", "x"}}} {
		got := map[string]bool{}
		for range tc.keys {
			ev := next(t, tc.w)
			if ev.Kind != KindCreate || ev.Old != nil {
				t.Fatalf("snapshot event %+v", ev)
			}
			v, ver, err := s.Get(ev.Key)
			if err != nil || ev.Seq != ver || !bytes.Equal(v, ev.Value) || want[string(ev.Key)] != ver {
				t.Fatalf("snapshot event %+v vs Get %q %d %v", ev, v, ver, err)
			}
			got[string(ev.Key)] = true
		}
		if len(got) != len(tc.keys) {
			t.Fatalf("snapshot keys %v, want %v", got, tc.keys)
		}
		mark := next(t, tc.w)
		if mark.Kind != KindSnapshotDone || mark.At != head || mark.ConsistentAt < mark.At || mark.Key != nil {
			t.Fatalf("marker %+v, want SnapshotDone at %d", mark, head)
		}
	}
	seq, _ = s.Put(b("a"), b("live"))
	checkEvent(t, next(t, w), seq, KindUpdate, "a", b("live"), b("0"))
	checkEvent(t, next(t, all), seq, KindUpdate, "a", b("live"), b("0"))
}

func TestSnapshotOfEmptyStore(t *testing.T) {
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{Start: StartSnapshot})
	mark := next(t, w)
	if mark.Kind != KindSnapshotDone || mark.At != 0 {
		t.Fatalf("marker %+v", mark)
	}
}

func TestConcurrentNextIsSerialised(t *testing.T) {
	// Two goroutines calling Next on one watcher split the events between
	// them without a data race (the -race run checks) and without loss.
	s := mustOpen(t, Options{})
	w := mustWatch(t, s, WatchOptions{})
	const n = 2000
	got := make(chan uint64, n)
	done := make(chan struct{})
	for g := 0; g < 2; g++ {
		go func() {
			for {
				ev, err := w.Next(context.Background())
				if err != nil {
					done <- struct{}{}
					return
				}
				got <- ev.Seq
			}
		}()
	}
	for i := 0; i < n; i++ {
		if _, err := s.Put(b("k"), b("v")); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[uint64]bool, n)
	for i := 0; i < n; i++ {
		seen[<-got] = true
	}
	w.Close()
	<-done
	<-done
	if len(seen) != n {
		t.Fatalf("saw %d distinct seqs, want %d", len(seen), n)
	}
}
