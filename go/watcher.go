package kvfeed

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Kind is the kind of an event, and a bit mask of kinds in WatchOptions.
type Kind uint32

// Event kinds. KindCreate|KindUpdate|KindDelete is a valid mask;
// KindSnapshotDone is only ever an event's kind.
const (
	KindCreate       Kind = 1
	KindUpdate       Kind = 2
	KindDelete       Kind = 4
	KindSnapshotDone Kind = 8
	// KindAll matches every change; it is what a zero mask means.
	KindAll = KindCreate | KindUpdate | KindDelete
)

func (k Kind) String() string {
	switch k {
	case KindCreate:
		return "Create"
	case KindUpdate:
		return "Update"
	case KindDelete:
		return "Delete"
	case KindSnapshotDone:
		return "SnapshotDone"
	}
	return fmt.Sprintf("Kind(%d)", uint32(k))
}

// Start says where a watcher begins reading.
type Start uint32

const (
	// StartNow: only events after the watch is created (the default).
	StartNow Start = 0
	// StartFrom: from WatchOptions.FromSeq on (0 is treated as 1). If that
	// seq was already overwritten, the first Next returns a *LaggedError.
	StartFrom Start = 1
	// StartSnapshot: first one KindCreate event per live matching key (its
	// Seq is the key's version, in no particular order), then one
	// KindSnapshotDone event, then live events with seq > At that the
	// snapshot did not already reflect. Once the watcher has applied every
	// event up to ConsistentAt, its view equals the store's.
	StartSnapshot Start = 2
)

// WatchOptions select the events a watcher receives. An event matches when
// its key equals one of Keys or starts with one of Prefixes (no Keys and no
// Prefixes: every key), and its kind is in Kinds.
type WatchOptions struct {
	Keys     [][]byte
	Prefixes [][]byte
	Kinds    Kind   // mask of KindCreate, KindUpdate, KindDelete; 0 = all
	Start    Start  // StartNow (zero value), StartFrom or StartSnapshot
	FromSeq  uint64 // first seq to read, with StartFrom
}

// Event is one change, or the end-of-snapshot marker.
//
// Key, Value and Old are Go copies the caller owns. Value is nil when the
// event has no new value (Delete) and non-nil, possibly empty, otherwise; Old
// is nil when the key had no previous value (Create) and non-nil otherwise.
// For KindSnapshotDone only At and ConsistentAt are set.
type Event struct {
	Seq   uint64
	Kind  Kind
	Key   []byte
	Value []byte
	Old   []byte
	// At is the head when the snapshot scan began, ConsistentAt the head
	// when it ended (KindSnapshotDone only).
	At, ConsistentAt uint64
}

// HasValue reports whether the event carries a new value (Create, Update).
func (e Event) HasValue() bool { return e.Value != nil }

// HasOld reports whether the event carries the previous value (Update, Delete).
func (e Event) HasOld() bool { return e.Old != nil }

// Watch creates a watcher. Keys and prefixes are copied; opts may be reused.
// Invalid options (unknown Start, unknown bits in Kinds) return
// ErrInvalidArg.
func (s *Store) Watch(opts WatchOptions) (*Watcher, error) {
	if opts.Kinds&^KindAll != 0 {
		return nil, fmt.Errorf("%w: kinds mask %#x has bits other than Create|Update|Delete", ErrInvalidArg, uint32(opts.Kinds))
	}
	if opts.Start > StartSnapshot {
		return nil, fmt.Errorf("%w: unknown start %d", ErrInvalidArg, uint32(opts.Start))
	}
	copts := newCWatchOpts(opts)
	defer C.free(unsafe.Pointer(copts))

	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	r := C.gokv_watch_new(s.h, copts)
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	if r.st != C.KVFEED_OK {
		return nil, statusError(r.st)
	}
	w := &Watcher{
		h:        r.w,
		evs:      C.gokv_events_new(batchSize),
		buf:      make([]Event, 0, batchSize),
		snapshot: opts.Start == StartSnapshot,
		done:     make(chan struct{}),
	}
	if w.evs == nil {
		C.gokv_watcher_free(r.w)
		return nil, fmt.Errorf("%w: out of memory", ErrInternal)
	}
	// Safety net only: an unreachable watcher is closed and freed.
	runtime.SetFinalizer(w, (*Watcher).Close)
	return w, nil
}

// newCWatchOpts lays out a kvfeed_watch_opts, its kvfeed_bytes arrays and a
// copy of every key and prefix in one C allocation (the caller frees it).
// cgo forbids storing Go pointers in C memory, so the filter bytes are copied
// rather than pointed to.
func newCWatchOpts(o WatchOptions) *C.kvfeed_watch_opts {
	optsSize := C.size_t(unsafe.Sizeof(C.kvfeed_watch_opts{}))
	bytesSize := C.size_t(unsafe.Sizeof(C.kvfeed_bytes{}))
	n := len(o.Keys) + len(o.Prefixes)
	size := optsSize + C.size_t(n)*bytesSize
	for _, k := range o.Keys {
		size += C.size_t(len(k))
	}
	for _, p := range o.Prefixes {
		size += C.size_t(len(p))
	}
	mem := C.calloc(1, size)
	if mem == nil {
		panic("kvfeed: out of C memory")
	}
	// Go's view of the block (C memory, never moved by Go).
	block := unsafe.Slice((*byte)(mem), int(size))
	copts := (*C.kvfeed_watch_opts)(mem)
	arr := unsafe.Slice((*C.kvfeed_bytes)(unsafe.Add(mem, optsSize)), n)
	data := int(optsSize) + n*int(bytesSize)
	fill := func(i int, b []byte) {
		arr[i].len = C.size_t(len(b))
		if len(b) == 0 {
			arr[i].ptr = nil // the empty byte string
			return
		}
		copy(block[data:], b)
		arr[i].ptr = (*C.uint8_t)(unsafe.Pointer(&block[data]))
		data += len(b)
	}
	for i, k := range o.Keys {
		fill(i, k)
	}
	for i, p := range o.Prefixes {
		fill(len(o.Keys)+i, p)
	}
	if len(o.Keys) > 0 {
		copts.keys = &arr[0]
		copts.n_keys = C.size_t(len(o.Keys))
	}
	if len(o.Prefixes) > 0 {
		copts.prefixes = &arr[len(o.Keys)]
		copts.n_prefixes = C.size_t(len(o.Prefixes))
	}
	copts.kinds = C.uint32_t(o.Kinds)
	copts.start = C.uint32_t(o.Start)
	copts.from_seq = C.uint64_t(o.FromSeq)
	return copts
}

// Watcher reads a store's events by cursor. Close it when done.
type Watcher struct {
	// mu serialises the C calls that read the watcher (the C handle is one
	// thread at a time) and Close's free against them.
	mu sync.Mutex
	h  C.uintptr_t // the kvfeed_watcher; 0 once closed; guarded by mu
	// evs is the C array of batchSize events that kvfeed_watcher_next_batch
	// fills; its pointers are valid until the next call, so fill copies
	// every event into Go memory at once.
	evs *C.kvfeed_event
	// pending holds events already read from the library but not yet
	// delivered, oldest first: the rest of the last batch, and an event an
	// Events channel read but could not hand over. Guarded by mu.
	pending []Event
	// buf is pending's backing array, reused from batch to batch.
	buf []Event
	// snapshot is true from a StartSnapshot watch until its SnapshotDone
	// event is delivered (Cursor needs it). Guarded by mu.
	snapshot bool

	closeOnce sync.Once
	done      chan struct{} // closed by Close; stops an Events goroutine

	errMu     sync.Mutex
	streamErr error // why the last Events channel closed
}

// batchSize is how many events one cgo call can bring over. A watcher that
// keeps up pays one crossing per batch of what was published since its
// previous call, not one per event.
const batchSize = 128

// Next returns the watcher's next event, blocking until one is published,
// ctx is done, or the watcher or store is closed.
//
// Errors: a *LaggedError (errors.As; errors.Is(err, ErrLagged)) when writers
// overwrote unread events — the watcher continues at ResumeAt, so just call
// Next again; ErrClosed after Close, or once a closed store's remaining
// events are delivered; ctx.Err() when ctx is done before an event arrives,
// after which the watcher is still usable and has lost nothing.
//
// Next reads events from the library in batches (one cgo call brings every
// event already published, up to 128) and returns them one by one. When it
// has to wait and ctx can be cancelled, a helper goroutine watches ctx for
// the duration of the wait and, on cancellation, wakes the native wait with
// kvfeed_watcher_interrupt, so Next returns promptly (typically within tens
// of microseconds) with ctx.Err().
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ev, ok := w.pop(); ok {
		return ev, nil
	}
	if w.h == 0 {
		return Event{}, ErrClosed
	}
	done := ctx.Done()
	st := w.fill(0) // a consumer that keeps up usually finds events waiting
	for st == C.KVFEED_TIMEOUT {
		select {
		case <-done: // nil (never ready) for a context that cannot be cancelled
			return Event{}, ctx.Err()
		default:
		}
		st = w.wait(done)
	}
	switch st {
	case C.KVFEED_OK:
		ev, _ := w.pop()
		return ev, nil
	case C.KVFEED_LAGGED:
		return Event{}, &LaggedError{Missed: uint64(w.evs.missed), ResumeAt: uint64(w.evs.resume_at)}
	default:
		return Event{}, statusError(st)
	}
}

// wait makes one blocking batch read. When done can fire, a helper goroutine
// interrupts the native wait on cancellation; wait returns only after the
// helper has exited, so no interrupt can reach a freed handle. An interrupt
// that lands after the read already returned stays pending in the library
// and ends a later wait early with KVFEED_TIMEOUT, which Next's loop treats
// like any other early timeout. Called with w.mu held and w.h != 0.
func (w *Watcher) wait(done <-chan struct{}) C.kvfeed_status {
	if done == nil {
		return w.fill(-1)
	}
	stop := make(chan struct{})
	exited := make(chan struct{})
	h := w.h
	go func() {
		defer close(exited)
		select {
		case <-done:
			C.gokv_watcher_interrupt(h)
		case <-stop:
		}
	}()
	st := w.fill(-1)
	close(stop)
	<-exited
	return st
}

// fill makes one kvfeed_watcher_next_batch call and, on OK, copies the
// events it returned into w.pending. Called with w.mu held, w.h != 0 and
// pending empty.
func (w *Watcher) fill(timeoutMs int64) C.kvfeed_status {
	r := C.gokv_watcher_next_batch(w.h, C.int64_t(timeoutMs), w.evs, batchSize)
	runtime.KeepAlive(w)
	if r.st != C.KVFEED_OK {
		return r.st
	}
	evs := unsafe.Slice(w.evs, int(r.n))
	pending := w.buf[:0]
	for i := range evs {
		pending = append(pending, copyEvent(&evs[i]))
	}
	w.pending = pending
	return r.st
}

// pop removes and returns the oldest pending event.
func (w *Watcher) pop() (Event, bool) {
	if len(w.pending) == 0 {
		return Event{}, false
	}
	ev := w.pending[0]
	w.pending[0] = Event{} // do not keep the caller's bytes alive
	w.pending = w.pending[1:]
	if ev.Kind == KindSnapshotDone {
		w.snapshot = false
	}
	return ev, true
}

// copyEvent copies one event the library wrote into Go memory, with key,
// value and old sharing one allocation.
func copyEvent(ev *C.kvfeed_event) Event {
	e := Event{Seq: uint64(ev.seq), Kind: Kind(ev.kind)}
	if e.Kind == KindSnapshotDone {
		e.At = uint64(ev.at)
		e.ConsistentAt = uint64(ev.consistent_at)
		return e
	}
	n := int(ev.key_len)
	if ev.has_value {
		n += int(ev.value_len)
	}
	if ev.has_old {
		n += int(ev.old_len)
	}
	buf := make([]byte, n)
	take := func(p *C.uint8_t, l C.size_t) []byte {
		k := int(l)
		if k > 0 {
			copy(buf, unsafe.Slice((*byte)(unsafe.Pointer(p)), k))
		}
		out := buf[:k:k] // full slice expression: appending to it never clobbers the next field
		buf = buf[k:]
		return out
	}
	e.Key = take(ev.key, ev.key_len)
	if ev.has_value {
		e.Value = take(ev.value, ev.value_len)
	}
	if ev.has_old {
		e.Old = take(ev.old, ev.old_len)
	}
	return e
}

// Cursor returns the next seq the watcher will deliver: a watcher created
// with StartFrom at this seq (and the same filter) continues where this one
// is. Events read from the library but not yet returned by Next count as
// not delivered. While a snapshot is being delivered it is the snapshot's
// At + 1, where its live events start.
func (w *Watcher) Cursor() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.h == 0 {
		return 0, ErrClosed
	}
	for _, ev := range w.pending {
		if ev.Kind == KindSnapshotDone {
			return ev.At + 1, nil
		}
		if !w.snapshot {
			// A live event: every seq before it that this watcher has not
			// delivered did not match its filter.
			return ev.Seq, nil
		}
	}
	r := C.gokv_watcher_cursor(w.h)
	runtime.KeepAlive(w)
	if r.st != C.KVFEED_OK {
		return 0, statusError(r.st)
	}
	return uint64(r.a), nil
}

// Close closes the watcher and frees it. A Next blocked on it (in another
// goroutine) returns ErrClosed promptly; an Events channel is closed. Close
// is idempotent, safe from any goroutine, and always returns nil.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		// kvfeed_watcher_close is thread-safe: it may run while Next holds
		// w.mu inside kvfeed_watcher_next, and wakes it with CLOSED. w.h is
		// only ever written below, by this same call, so reading it here
		// without w.mu is safe.
		C.gokv_watcher_close(w.h)
		w.mu.Lock()
		C.gokv_watcher_free(w.h)
		w.h = 0
		C.free(unsafe.Pointer(w.evs))
		w.evs = nil
		w.pending = nil
		w.buf = nil
		w.mu.Unlock()
		runtime.SetFinalizer(w, nil)
	})
	return nil
}

// Events returns a channel fed by a goroutine that calls Next(ctx) in a loop,
// for callers who prefer range or select over Next. The channel is
// unbuffered: the goroutine holds at most one event that the caller has not
// received, which is what lets cancellation lose nothing (below).
//
// The channel is closed at the first error, and Err then tells why:
//   - *LaggedError: writers overwrote events this watcher had not read. The
//     channel closes rather than carrying on, so a range loop cannot skip a
//     gap unnoticed. The watcher stays open at ResumeAt: resynchronise (for
//     example with a new StartSnapshot watcher) or call Events again to go
//     on from ResumeAt.
//   - ErrClosed: the watcher was closed, or its store was closed and every
//     remaining event was delivered.
//   - ctx.Err(): ctx was cancelled. The event the goroutine had read but not
//     yet handed over is put back, and the next Next or Events call returns
//     it first, so cancelling loses nothing and keeps the order.
//
// Cancel ctx (or Close the watcher) to stop the goroutine. Use one Events
// channel at a time per watcher, and no concurrent Next meanwhile.
func (w *Watcher) Events(ctx context.Context) <-chan Event {
	ch := make(chan Event)
	w.setStreamErr(nil)
	go w.pump(ctx, ch)
	return ch
}

// Err returns the error that closed the most recent Events channel, or nil
// while that channel is still open (and before the first Events call).
func (w *Watcher) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.streamErr
}

func (w *Watcher) setStreamErr(err error) {
	w.errMu.Lock()
	w.streamErr = err
	w.errMu.Unlock()
}

func (w *Watcher) pump(ctx context.Context, ch chan<- Event) {
	var err error
	defer func() {
		// Set before close: a receiver that sees the channel closed then
		// reads Err and finds the reason.
		w.setStreamErr(err)
		close(ch)
	}()
	for {
		ev, e := w.Next(ctx)
		if e != nil {
			err = e
			return
		}
		select {
		case ch <- ev:
		case <-ctx.Done():
			w.unread(ev)
			err = ctx.Err()
			return
		case <-w.done:
			err = ErrClosed
			return
		}
	}
}

// unread puts back an event that was read but not handed over, so that the
// next Next returns it first.
func (w *Watcher) unread(ev Event) {
	w.mu.Lock()
	if w.h != 0 {
		w.pending = append([]Event{ev}, w.pending...)
		if ev.Kind == KindSnapshotDone {
			w.snapshot = true // pop had cleared it
		}
	}
	w.mu.Unlock()
}
