// Package kvfeed is the Go binding of kvfeed, an in-process key-value store
// whose every mutation is appended to a sequence-numbered ring that any number
// of watchers read by cursor. It wraps the library's C ABI through cgo: the
// header (kvfeed.h) is part of this module, and the static C library is found
// through pkg-config (`#cgo pkg-config: kvfeed`) once installed with
// `ffi/build-c.sh --prefix DIR` from a kvfeed checkout (see README-GO.md).
//
// Keys and values are byte strings. Every mutation gets a seq (1, 2, 3, ...);
// every key carries a version, the seq of the mutation that last wrote it.
//
//	s, err := kvfeed.Open(kvfeed.Options{})
//	defer s.Close()
//	w, err := s.Watch(kvfeed.WatchOptions{Prefixes: [][]byte{[]byte("cfg/")}})
//	defer w.Close()
//	s.Put([]byte("cfg/a"), []byte("1"))
//	ev, err := w.Next(ctx) // Event{Seq: 1, Kind: KindCreate, Key: "cfg/a", Value: "1"}
//
// # Guarantees
//
// A watcher receives its matching events in strictly increasing seq; for each
// key, an event's Old equals the previous event's Value. A watcher never loses
// an event silently: when writers overwrite events it has not read yet, Next
// returns a *LaggedError saying exactly how many sequence numbers were missed
// and where the watcher continues. Writers never wait for watchers.
//
// # Memory and cgo
//
// Everything a method returns lives in Go memory: keys and values are copied
// out of the library before the next call on the watcher. C never keeps a Go
// pointer: byte slices are passed to C for the duration of one call only, and
// watch filters are copied into C memory first.
//
// # Closing
//
// Close releases a Store or Watcher at once and is idempotent; a finalizer
// calls it as a safety net only, so always call Close. Closing a store makes
// its watchers deliver what is left in the ring and then return ErrClosed.
// Closing a watcher wakes a Next blocked on it, which returns ErrClosed.
//
// # Thread safety
//
// A Store may be used from any number of goroutines. A Watcher is a single
// consumer: calls to Next are serialised by a mutex (so concurrent use is
// safe, but the events are then split between the callers); Close may be
// called from any goroutine at any time.
package kvfeed

/*
#cgo pkg-config: kvfeed
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Version returns the version string of the linked C library.
func Version() string { return C.GoString(C.kvfeed_version()) }

// HeaderVersion returns the version of the C header this package was
// compiled with (kvfeed.h, shipped inside the module).
func HeaderVersion() string {
	return fmt.Sprintf("%d.%d.%d", C.KVFEED_VERSION_MAJOR, C.KVFEED_VERSION_MINOR, C.KVFEED_VERSION_PATCH)
}

// checkVersion reports a library whose major.minor differs from the
// header's: the library is installed separately from the module (through
// pkg-config), so an old install is the likely cause. Patch versions may
// differ.
func checkVersion() error {
	var major, minor int
	lib := Version()
	if _, err := fmt.Sscanf(lib, "%d.%d", &major, &minor); err != nil ||
		major != int(C.KVFEED_VERSION_MAJOR) || minor != int(C.KVFEED_VERSION_MINOR) {
		return fmt.Errorf("%w: the linked C library is version %s but this module's header is %s; "+
			"install the matching library (ffi/build-c.sh, see README-GO.md)", ErrInternal, lib, HeaderVersion())
	}
	return nil
}

var (
	versionChecked sync.Once
	versionErr     error
)

// statusError maps a kvfeed_status other than OK, TIMEOUT, LAGGED and
// CONFLICT (which carry data and are handled by their callers) to an error.
func statusError(st C.kvfeed_status) error {
	switch st {
	case C.KVFEED_OK:
		return nil
	case C.KVFEED_NOT_FOUND:
		return ErrNotFound
	case C.KVFEED_CLOSED:
		return ErrClosed
	case C.KVFEED_TOO_LARGE:
		return ErrTooLarge
	case C.KVFEED_INVALID_ARG:
		return ErrInvalidArg
	case C.KVFEED_CONFLICT:
		return ErrConflict
	default:
		// NULL_ARG cannot happen through this binding (every pointer it
		// passes is valid or paired with length 0); report it, and anything
		// unknown, as internal.
		return fmt.Errorf("%w: status %d (%s)", ErrInternal, int(st), C.GoString(C.kvfeed_status_str(st)))
	}
}

// bytesPtr returns a pointer to b's first byte, or nil for an empty slice
// (the C ABI accepts NULL with length 0 as the empty byte string). The
// pointer is passed to C for one call only; b contains no Go pointers, as
// cgo's rules require.
func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// copyOut copies n bytes at p (C memory) into a new Go slice. The result is
// never nil, so an empty value is distinguishable from an absent one.
func copyOut(p *C.uint8_t, n C.size_t) []byte {
	out := make([]byte, int(n))
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	}
	return out
}

// Library limits and defaults (those of kvfeed.h; checked at compile time).
const (
	DefaultCapacity    = 65536
	MaxCapacity        = 1 << 30
	DefaultMaxKeyLen   = 65536
	DefaultMaxValueLen = 16 << 20
)

// Compile-time checks that the Go constants (written as literals so that go
// doc shows their values) equal the header's: indexing a one-element array
// with a non-zero constant does not compile.
var _ = [1]struct{}{}[DefaultCapacity-C.KVFEED_DEFAULT_CAPACITY]
var _ = [1]struct{}{}[MaxCapacity-C.KVFEED_MAX_CAPACITY]
var _ = [1]struct{}{}[DefaultMaxKeyLen-C.KVFEED_DEFAULT_MAX_KEY_LEN]
var _ = [1]struct{}{}[DefaultMaxValueLen-C.KVFEED_DEFAULT_MAX_VALUE_LEN]
var _ = [1]struct{}{}[uint32(KindCreate)-C.KVFEED_KIND_CREATE]
var _ = [1]struct{}{}[uint32(KindUpdate)-C.KVFEED_KIND_UPDATE]
var _ = [1]struct{}{}[uint32(KindDelete)-C.KVFEED_KIND_DELETE]
var _ = [1]struct{}{}[uint32(KindSnapshotDone)-C.KVFEED_KIND_SNAPSHOT_DONE]
var _ = [1]struct{}{}[uint32(StartNow)-C.KVFEED_START_NOW]
var _ = [1]struct{}{}[uint32(StartFrom)-C.KVFEED_START_FROM]
var _ = [1]struct{}{}[uint32(StartSnapshot)-C.KVFEED_START_SNAPSHOT]

// Options configure a Store. The zero value is a store with the library's
// defaults.
type Options struct {
	// Capacity is the number of events the ring holds. 0 means the default
	// (65536); otherwise it must be a power of two >= 2, or Open returns
	// ErrInvalidArg, and at most MaxCapacity, or ErrTooLarge. A watcher that falls further behind than Capacity
	// events gets a *LaggedError.
	Capacity uint64
	// SuppressUnchanged makes a Put of a value equal to the current one a
	// no-op: no event, and Put returns the key's current version.
	SuppressUnchanged bool
	// MaxKeyLen and MaxValueLen bound key and value sizes (0 = defaults,
	// 64 KiB and 16 MiB). Writes over a bound fail with ErrTooLarge, and so
	// does a watch whose filter keys or prefixes are longer than MaxKeyLen.
	MaxKeyLen   uint64
	MaxValueLen uint64
}

// Store is a kvfeed store. Its methods are safe for concurrent use.
type Store struct {
	// mu protects h: methods hold the read lock for the duration of their C
	// call (no store call blocks for long), Close holds the write lock while
	// it frees the handle, so no call can use a freed handle.
	mu        sync.RWMutex
	h         C.uintptr_t // the kvfeed_store; 0 once closed
	closeOnce sync.Once
}

// Open creates a store. It fails with ErrInternal when the installed C
// library's major.minor version differs from the header the module ships.
func Open(opts Options) (*Store, error) {
	versionChecked.Do(func() { versionErr = checkVersion() })
	if versionErr != nil {
		return nil, versionErr
	}
	var suppress C.uint32_t
	if opts.SuppressUnchanged {
		suppress = 1
	}
	r := C.gokv_store_new(C.uint64_t(opts.Capacity), suppress, C.uint64_t(opts.MaxKeyLen), C.uint64_t(opts.MaxValueLen))
	if r.st != C.KVFEED_OK {
		err := statusError(r.st)
		switch r.st {
		case C.KVFEED_INVALID_ARG:
			err = fmt.Errorf("%w: capacity %d (want 0 or a power of two >= 2)", ErrInvalidArg, opts.Capacity)
		case C.KVFEED_TOO_LARGE:
			err = fmt.Errorf("%w: capacity %d (at most %d)", ErrTooLarge, opts.Capacity, MaxCapacity)
		}
		return nil, err
	}
	s := &Store{h: r.s}
	// Safety net only: a Store that is dropped without Close still frees the
	// library's store (which closes the feed for its watchers).
	runtime.SetFinalizer(s, (*Store).Close)
	return s, nil
}

// Close closes the store: later calls return ErrClosed, and its watchers
// deliver the events still in the ring and then return ErrClosed. It frees
// the library's store and is idempotent; it always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		C.gokv_store_free(s.h) // closes the feed; live watchers keep it allocated
		s.h = 0
		s.mu.Unlock()
		runtime.SetFinalizer(s, nil)
	})
	return nil
}

// Put sets key to value and returns the seq of the Create or Update event.
// With SuppressUnchanged, putting the current value emits nothing and
// returns the key's current version.
func (s *Store) Put(key, value []byte) (seq uint64, err error) {
	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	r := C.gokv_put(s.h, bytesPtr(key), C.size_t(len(key)), bytesPtr(value), C.size_t(len(value)))
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	if r.st != C.KVFEED_OK {
		return 0, statusError(r.st)
	}
	return uint64(r.a), nil
}

// Get returns a copy of key's value and its version (the seq of the event
// that last wrote it), or ErrNotFound.
func (s *Store) Get(key []byte) (value []byte, version uint64, err error) {
	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return nil, 0, ErrClosed
	}
	r := C.gokv_get(s.h, bytesPtr(key), C.size_t(len(key)))
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	if r.st != C.KVFEED_OK {
		return nil, 0, statusError(r.st)
	}
	// The value is a library-owned buffer: copy it, then give it back.
	value = copyOut(r.buf.ptr, r.buf.len)
	C.gokv_buf_free(r.buf.ptr, r.buf.len)
	return value, uint64(r.version), nil
}

// Delete removes key and returns the seq of its Delete event. Deleting an
// absent key changes nothing, emits nothing and returns ErrNotFound.
func (s *Store) Delete(key []byte) (seq uint64, err error) {
	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	r := C.gokv_delete(s.h, bytesPtr(key), C.size_t(len(key)))
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	if r.st != C.KVFEED_OK {
		return 0, statusError(r.st)
	}
	return uint64(r.a), nil
}

// DeletePrefix removes every key that starts with prefix (one Delete event
// each) and returns how many it removed.
func (s *Store) DeletePrefix(prefix []byte) (n uint64, err error) {
	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	r := C.gokv_delete_prefix(s.h, bytesPtr(prefix), C.size_t(len(prefix)))
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	if r.st != C.KVFEED_OK {
		return 0, statusError(r.st)
	}
	return uint64(r.a), nil
}

// CompareAndPut sets key to value only if the key's version is
// expectedVersion (0 = only if the key is absent), and returns the new seq.
// Otherwise it returns a *ConflictError with the current version (0 when
// absent); errors.Is(err, ErrConflict) is true for it.
func (s *Store) CompareAndPut(key []byte, expectedVersion uint64, value []byte) (seq uint64, err error) {
	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	r := C.gokv_compare_and_put(s.h, bytesPtr(key), C.size_t(len(key)), C.uint64_t(expectedVersion),
		bytesPtr(value), C.size_t(len(value)))
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	switch r.st {
	case C.KVFEED_OK:
		return uint64(r.a), nil
	case C.KVFEED_CONFLICT:
		return 0, &ConflictError{CurrentVersion: uint64(r.b)}
	default:
		return 0, statusError(r.st)
	}
}

// Head returns the last seq handed out (0 before the first write).
func (s *Store) Head() (uint64, error) {
	s.mu.RLock()
	if s.h == 0 {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	r := C.gokv_head(s.h)
	s.mu.RUnlock()
	runtime.KeepAlive(s)
	if r.st != C.KVFEED_OK {
		return 0, statusError(r.st)
	}
	return uint64(r.a), nil
}
