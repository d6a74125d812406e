// A NATS Go client reading a kvfeed-nats stream with nothing but the
// documented message format (no kvfeed code). Build it without the Go
// module proxy, from Debian's packaged nats.go:
//
//	apt-get install golang-github-nats-io-go-nats-dev
//	GO111MODULE=off GOPATH=/usr/share/gocode go run nats/go-consumer/main.go nats://127.0.0.1:4222 demo
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

func num(m *nats.Msg, h string) (int, bool) {
	v := m.Header.Get(h)
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

func main() {
	url, stream := os.Args[1], os.Args[2]
	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		panic(err)
	}
	sub, err := js.SubscribeSync("kvfeed."+stream+".>", nats.OrderedConsumer(), nats.DeliverAll())
	if err != nil {
		panic(err)
	}
	for {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			return // idle for 2 s: done
		}
		kind, seq := m.Header.Get("Kvfeed-Kind"), m.Header.Get("Kvfeed-Seq")
		klen, _ := num(m, "Kvfeed-Key-Len")
		key, rest := m.Data[:klen], m.Data[klen:]
		var value, old []byte
		if n, ok := num(m, "Kvfeed-Value-Len"); ok {
			value, rest = rest[:n], rest[n:]
		}
		if n, ok := num(m, "Kvfeed-Old-Len"); ok {
			old = rest[:n]
		}
		switch kind {
		case "lagged":
			fmt.Printf("seq %s lagged: a recovery snapshot follows, live resumes at %s\n", seq, m.Header.Get("Kvfeed-Resume-At"))
		case "snapshot-done":
			fmt.Printf("seq %s snapshot done (consistent at %s)\n", seq, m.Header.Get("Kvfeed-Consistent-At"))
		default:
			fmt.Printf("seq %s %s %q value=%q old=%q\n", seq, kind, key, value, old)
		}
	}
}
