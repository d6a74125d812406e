// Command example shows the kvfeed Go binding end to end: a writer goroutine
// updates a small config store while a watcher rebuilds its view from a
// snapshot plus live events, handling lag and shutdown.
//
//	cd go && go run ./example
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"

	kvfeed "github.com/kvfeed/kvfeed/go"
)

func main() {
	store, err := kvfeed.Open(kvfeed.Options{Capacity: 1024})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	store.Put([]byte("cfg/workers"), []byte("4"))
	store.Put([]byte("cfg/mode"), []byte("fast"))

	// Ctrl-C cancels the watcher's context; Next returns promptly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		for i := 0; i < 5; i++ {
			store.Put([]byte("cfg/workers"), []byte(fmt.Sprint(5+i)))
		}
		store.Delete([]byte("cfg/mode"))
		head, _ := store.Head()
		fmt.Println("writer done, head =", head)
	}()

	view, err := follow(ctx, store, func() { wg.Wait(); store.Close() })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("final view:", view)
}

// follow keeps a map equal to the store's "cfg/" keys until the store closes.
func follow(ctx context.Context, store *kvfeed.Store, whenSnapshotDone func()) (map[string]string, error) {
	w, err := store.Watch(kvfeed.WatchOptions{Prefixes: [][]byte{[]byte("cfg/")}, Start: kvfeed.StartSnapshot})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	view := map[string]string{}
	for {
		ev, err := w.Next(ctx)
		var lag *kvfeed.LaggedError
		switch {
		case errors.Is(err, kvfeed.ErrClosed):
			return view, nil // store closed and every event delivered
		case errors.As(err, &lag):
			// Lapped: the view may be stale. Start over from a snapshot.
			fmt.Printf("lagged: missed %d events\n", lag.Missed)
			return follow(ctx, store, whenSnapshotDone)
		case err != nil:
			return nil, err // ctx cancelled
		}
		switch ev.Kind {
		case kvfeed.KindSnapshotDone:
			fmt.Printf("snapshot: %d keys at seq %d\n", len(view), ev.At)
			go whenSnapshotDone()
		case kvfeed.KindDelete:
			delete(view, string(ev.Key))
			fmt.Printf("seq %d: delete %s (was %s)\n", ev.Seq, ev.Key, ev.Old)
		default:
			view[string(ev.Key)] = string(ev.Value)
			fmt.Printf("seq %d: %s %s = %s\n", ev.Seq, ev.Kind, ev.Key, ev.Value)
		}
	}
}
