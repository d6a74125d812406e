package kvfeed

import (
	"errors"
	"fmt"
)

// Sentinel errors. Compare with errors.Is: some are returned wrapped with
// more detail (ErrConflict through *ConflictError, ErrLagged through
// *LaggedError, ErrInvalidArg with the offending option).
var (
	// ErrClosed: the store or watcher was closed (by Close on this handle,
	// or, for a watcher, because its store was closed and every event left
	// in the ring has been delivered).
	ErrClosed = errors.New("kvfeed: closed")
	// ErrNotFound: Get or Delete of an absent key.
	ErrNotFound = errors.New("kvfeed: key not found")
	// ErrConflict: CompareAndPut found another version; the concrete error
	// is a *ConflictError carrying that version.
	ErrConflict = errors.New("kvfeed: version conflict")
	// ErrTooLarge: a key or value is over the store's configured maximum;
	// nothing was changed.
	ErrTooLarge = errors.New("kvfeed: key or value too large")
	// ErrInvalidArg: an option is out of range (capacity not a power of two,
	// unknown start mode, unknown kind bits, ...); nothing was created.
	ErrInvalidArg = errors.New("kvfeed: invalid argument")
	// ErrLagged: matched by every *LaggedError.
	ErrLagged = errors.New("kvfeed: watcher lagged")
	// ErrInternal: the library reported an internal failure (a caught panic)
	// or a status this binding does not know. The process is unaffected.
	ErrInternal = errors.New("kvfeed: internal error")
)

// LaggedError is returned by Watcher.Next when writers overwrote events the
// watcher had not read yet. Exactly Missed sequence numbers were lost
// (Missed == ResumeAt - the watcher's cursor before the lag); the watcher
// stays open and its next event has a seq >= ResumeAt. Nothing is ever
// dropped without this error.
//
//	var lag *kvfeed.LaggedError
//	if errors.As(err, &lag) { resync(); continue }
type LaggedError struct {
	Missed   uint64 // sequence numbers overwritten before they were read
	ResumeAt uint64 // the watcher's cursor after the lag
}

func (e *LaggedError) Error() string {
	return fmt.Sprintf("kvfeed: watcher lagged: %d events missed, resuming at seq %d", e.Missed, e.ResumeAt)
}

// Is reports true for ErrLagged.
func (e *LaggedError) Is(target error) bool { return target == ErrLagged }

// ConflictError is returned by CompareAndPut when the key's version is not
// the expected one. errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	CurrentVersion uint64 // the key's version now; 0 when the key is absent
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("kvfeed: version conflict: current version is %d", e.CurrentVersion)
}

// Is reports true for ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
