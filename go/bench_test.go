package kvfeed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time (user + system) the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// Benchmarks: one writer goroutine doing Put on 1024 keys (16-byte values)
// while one watcher goroutine receives every event, through this binding and
// through the design small Go stores use today:
// a map behind a sync.RWMutex plus one buffered channel per watcher.
// ns/op is per put, including its delivery to the watcher.
//
//	go test -run '^$' -bench . -benchmem
//
// Extra metrics: delivered/op (fraction of puts the watcher received) and,
// for kvfeed, missed/op (counted by *LaggedError) or, for the baseline,
// dropped/op (lost without any signal); cpu-ns/op is the CPU time the whole
// process used per put (writer, watcher, runtime, user + system), which
// moves less than ns/op when other jobs share the machine.

const benchKeys = 1024

func benchData() ([][]byte, []byte) {
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("bench/key/%06d", i))
	}
	return keys, []byte("0123456789abcdef")
}

func BenchmarkPut(b *testing.B) {
	keys, val := benchData()
	b.Run("kvfeed", func(b *testing.B) {
		s, err := Open(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.Put(keys[i%benchKeys], val); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map+RWMutex", func(b *testing.B) {
		s := newBaseStore()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s.Put(keys[i%benchKeys], val)
		}
	})
}

func BenchmarkGet(b *testing.B) {
	keys, val := benchData()
	b.Run("kvfeed", func(b *testing.B) {
		s, err := Open(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for _, k := range keys {
			s.Put(k, val)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, _, err := s.Get(keys[i%benchKeys]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map+RWMutex", func(b *testing.B) {
		s := newBaseStore()
		for _, k := range keys {
			s.Put(k, val)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, _, ok := s.Get(keys[i%benchKeys]); !ok {
				b.Fatal("missing")
			}
		}
	})
}

func BenchmarkPutWatch(b *testing.B) {
	keys, val := benchData()

	// kvfeed, watcher reading with Next(context.Background()).
	b.Run("kvfeed/Next", func(b *testing.B) {
		benchKvfeed(b, keys, val, func(w *Watcher) (delivered, missed uint64) {
			for {
				_, err := w.Next(context.Background())
				var lag *LaggedError
				switch {
				case err == nil:
					delivered++
				case errors.As(err, &lag):
					missed += lag.Missed
				default: // ErrClosed once the store is closed and drained
					return
				}
			}
		})
	})
	// kvfeed, Next with a cancellable context (timed native waits).
	b.Run("kvfeed/NextCtx", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		benchKvfeed(b, keys, val, func(w *Watcher) (delivered, missed uint64) {
			for {
				_, err := w.Next(ctx)
				var lag *LaggedError
				switch {
				case err == nil:
					delivered++
				case errors.As(err, &lag):
					missed += lag.Missed
				default:
					return
				}
			}
		})
	})
	// kvfeed, watcher ranging over the Events channel.
	b.Run("kvfeed/Events", func(b *testing.B) {
		benchKvfeed(b, keys, val, func(w *Watcher) (delivered, missed uint64) {
			for {
				for range w.Events(context.Background()) {
					delivered++
				}
				var lag *LaggedError
				if !errors.As(w.Err(), &lag) {
					return
				}
				missed += lag.Missed
			}
		})
	})
	// The seed design: buffered channel of 16, non-blocking send (drops
	// silently when the watcher is behind).
	b.Run("map+RWMutex+chan/drop16", func(b *testing.B) {
		benchBase(b, keys, val, 16, false)
	})
	// The same with a blocking send on a 1024 buffer: lossless, but the
	// writer waits for the slowest watcher.
	b.Run("map+RWMutex+chan/block1024", func(b *testing.B) {
		benchBase(b, keys, val, 1024, true)
	})
}

func benchKvfeed(b *testing.B, keys [][]byte, val []byte, consume func(*Watcher) (delivered, missed uint64)) {
	s, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w, err := s.Watch(WatchOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	type result struct{ delivered, missed uint64 }
	res := make(chan result, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	go func() {
		d, m := consume(w)
		res <- result{d, m}
	}()
	for i := 0; i < b.N; i++ {
		if _, err := s.Put(keys[i%benchKeys], val); err != nil {
			b.Fatal(err)
		}
	}
	s.Close() // the watcher drains the ring, then gets ErrClosed
	r := <-res
	b.StopTimer()
	reportCPU(b, cpu0)
	if r.delivered+r.missed != uint64(b.N) {
		b.Fatalf("delivered %d + missed %d != %d puts", r.delivered, r.missed, b.N)
	}
	b.ReportMetric(float64(r.delivered)/float64(b.N), "delivered/op")
	b.ReportMetric(float64(r.missed)/float64(b.N), "missed/op")
}

func benchBase(b *testing.B, keys [][]byte, val []byte, buf int, block bool) {
	s := newBaseStore()
	w := s.Watch(buf, block)
	res := make(chan uint64, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	go func() {
		var n uint64
		for range w.ch {
			n++
		}
		res <- n
	}()
	for i := 0; i < b.N; i++ {
		s.Put(keys[i%benchKeys], val)
	}
	s.Unwatch(w)
	delivered := <-res
	b.StopTimer()
	reportCPU(b, cpu0)
	if delivered+w.dropped != uint64(b.N) {
		b.Fatalf("delivered %d + dropped %d != %d", delivered, w.dropped, b.N)
	}
	b.ReportMetric(float64(delivered)/float64(b.N), "delivered/op")
	b.ReportMetric(float64(w.dropped)/float64(b.N), "dropped/op")
}

// baseStore is the baseline: the seed's map + RWMutex + one channel per
// watcher, with the event (seq, kind, key, value, old) kvfeed delivers.
// Watchers are notified under the write lock so that, like kvfeed, each
// watcher sees events in seq order (the seed notifies after unlocking and
// can reorder concurrent writes).
type baseStore struct {
	mu       sync.RWMutex
	m        map[string]baseEntry
	seq      uint64
	watchers []*baseWatcher
}

type baseEntry struct {
	value   []byte
	version uint64
}

type baseEvent struct {
	Seq        uint64
	Kind       Kind
	Key        string
	Value, Old []byte
}

type baseWatcher struct {
	ch      chan baseEvent
	block   bool
	dropped uint64 // written under the store's lock
}

func newBaseStore() *baseStore { return &baseStore{m: make(map[string]baseEntry)} }

func (s *baseStore) Put(key, value []byte) uint64 {
	v := append([]byte(nil), value...) // the store owns its copy, as kvfeed does
	k := string(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	old, had := s.m[k]
	s.m[k] = baseEntry{v, s.seq}
	ev := baseEvent{Seq: s.seq, Kind: KindCreate, Key: k, Value: v}
	if had {
		ev.Kind, ev.Old = KindUpdate, old.value
	}
	for _, w := range s.watchers {
		if w.block {
			w.ch <- ev
			continue
		}
		select {
		case w.ch <- ev:
		default:
			w.dropped++
		}
	}
	return s.seq
}

func (s *baseStore) Get(key []byte) ([]byte, uint64, bool) {
	s.mu.RLock()
	e, ok := s.m[string(key)]
	s.mu.RUnlock()
	if !ok {
		return nil, 0, false
	}
	return append([]byte(nil), e.value...), e.version, true
}

func (s *baseStore) Watch(buf int, block bool) *baseWatcher {
	w := &baseWatcher{ch: make(chan baseEvent, buf), block: block}
	s.mu.Lock()
	s.watchers = append(s.watchers, w)
	s.mu.Unlock()
	return w
}

func (s *baseStore) Unwatch(w *baseWatcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.watchers {
		if x == w {
			s.watchers = append(s.watchers[:i], s.watchers[i+1:]...)
			close(w.ch)
			return
		}
	}
}
