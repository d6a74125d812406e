package kvfeed_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	kvfeed "github.com/kvfeed/kvfeed/go"
)

// A watcher on a prefix, a few writes, and the events they produce.
func Example() {
	store, err := kvfeed.Open(kvfeed.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	w, err := store.Watch(kvfeed.WatchOptions{Prefixes: [][]byte{[]byte("cfg/")}})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	store.Put([]byte("cfg/timeout"), []byte("5s"))
	store.Put([]byte("other"), []byte("not watched"))
	store.Put([]byte("cfg/timeout"), []byte("10s"))
	store.Delete([]byte("cfg/timeout"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		ev, err := w.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s %s value=%q old=%q\n", ev.Seq, ev.Kind, ev.Key, ev.Value, ev.Old)
	}
	// Output:
	// 1 Create cfg/timeout value="5s" old=""
	// 3 Update cfg/timeout value="10s" old="5s"
	// 4 Delete cfg/timeout value="" old="10s"
}

// Snapshot then live: rebuild a view of the store and keep it current.
func ExampleStore_Watch_snapshot() {
	store, _ := kvfeed.Open(kvfeed.Options{})
	defer store.Close()
	store.Put([]byte("a"), []byte("1"))
	store.Put([]byte("b"), []byte("2"))

	w, _ := store.Watch(kvfeed.WatchOptions{Start: kvfeed.StartSnapshot})
	defer w.Close()
	view := map[string]string{}
	ctx := context.Background()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if ev.Kind == kvfeed.KindSnapshotDone {
			fmt.Println("snapshot done at seq", ev.At)
			break
		}
		view[string(ev.Key)] = string(ev.Value)
	}
	fmt.Println(view["a"], view["b"])
	// Output:
	// snapshot done at seq 2
	// 1 2
}

// Handling a lag: the watcher was lapped, is told exactly how much it
// missed, and continues.
func ExampleLaggedError() {
	store, _ := kvfeed.Open(kvfeed.Options{Capacity: 4})
	defer store.Close()
	w, _ := store.Watch(kvfeed.WatchOptions{})
	defer w.Close()
	for i := 0; i < 10; i++ {
		store.Put([]byte("k"), []byte{byte('0' + i)})
	}
	_, err := w.Next(context.Background())
	var lag *kvfeed.LaggedError
	if errors.As(err, &lag) {
		fmt.Printf("missed %d, resuming at %d\n", lag.Missed, lag.ResumeAt)
	}
	ev, _ := w.Next(context.Background())
	fmt.Println("next seq", ev.Seq)
	// Output:
	// missed 6, resuming at 7
	// next seq 7
}

// CompareAndPut as an optimistic update.
func ExampleStore_CompareAndPut() {
	store, _ := kvfeed.Open(kvfeed.Options{})
	defer store.Close()
	store.Put([]byte("counter"), []byte("1"))
	_, version, _ := store.Get([]byte("counter"))

	store.Put([]byte("counter"), []byte("7")) // someone else writes first

	_, err := store.CompareAndPut([]byte("counter"), version, []byte("2"))
	var conflict *kvfeed.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println("conflict, current version", conflict.CurrentVersion, errors.Is(err, kvfeed.ErrConflict))
	}
	// Output:
	// conflict, current version 2 true
}

// Events adapts a watcher to a channel; the channel closes on the first
// error and Err says why.
func ExampleWatcher_Events() {
	store, _ := kvfeed.Open(kvfeed.Options{})
	w, _ := store.Watch(kvfeed.WatchOptions{})
	defer w.Close()
	store.Put([]byte("a"), []byte("1"))
	store.Put([]byte("b"), []byte("2"))
	store.Close() // the watcher drains, then reports ErrClosed

	for ev := range w.Events(context.Background()) {
		fmt.Println(ev.Seq, string(ev.Key))
	}
	fmt.Println(errors.Is(w.Err(), kvfeed.ErrClosed))
	// Output:
	// 1 a
	// 2 b
	// true
}
