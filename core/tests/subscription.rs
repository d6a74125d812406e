//! `Feed::on`: the owner of a `Subscription` learns that its handler
//! panicked; stopping and dropping still stop it. No sleeps: channels, joins,
//! and `is_finished` polled with `yield_now` where the test waits for the
//! handler's thread to end by itself.

use std::sync::mpsc;

use kvfeed::{Feed, WatchOptions};

#[test]
fn join_reports_the_handlers_panic_and_later_events_are_not_handled() {
    let feed: Feed<u32, u32> = Feed::new();
    let (tx, rx) = mpsc::channel();
    let sub = feed.on(WatchOptions::all(), move |ev| {
        let v = ev.unwrap().as_change().unwrap().value.unwrap();
        assert_ne!(v, 2, "value two is refused");
        tx.send(v).unwrap();
    });
    for v in 1..=4 {
        feed.put(v, v).unwrap();
    }
    feed.close();
    let err = sub.join().unwrap_err();
    assert!(err.message().contains("value two is refused"), "{err}");
    assert_eq!(rx.iter().collect::<Vec<_>>(), [1]);
}

#[test]
fn the_owner_sees_the_panic_while_the_feed_runs() {
    let feed: Feed<u32, u32> = Feed::new();
    let sub = feed.on(WatchOptions::all(), |_| panic!("handler failed"));
    assert!(!sub.is_finished());
    feed.put(1, 1).unwrap();
    while !sub.is_finished() {
        std::thread::yield_now();
    }
    assert!(!feed.is_closed());
    assert_eq!(sub.stop().unwrap_err().message(), "handler failed");
    // The feed is unaffected.
    feed.put(2, 2).unwrap();
}

#[test]
fn a_non_string_panic_payload_is_still_reported() {
    let feed: Feed<u32, u32> = Feed::new();
    let sub = feed.on(WatchOptions::all(), |_| std::panic::panic_any(42u8));
    feed.put(1, 1).unwrap();
    feed.close();
    assert!(sub.join().is_err());
}

#[test]
fn stop_on_a_healthy_handler_is_ok_and_ends_delivery() {
    let feed: Feed<u32, u32> = Feed::new();
    let (tx, rx) = mpsc::channel();
    let sub = feed.on(WatchOptions::all(), move |ev| {
        tx.send(ev.unwrap().as_change().unwrap().seq).unwrap();
    });
    let s1 = feed.put(1, 1).unwrap();
    assert_eq!(rx.recv().unwrap(), s1);
    sub.stop().unwrap();
    feed.put(2, 2).unwrap();
    // The handler (and its sender) are gone.
    assert!(rx.recv().is_err());
}

#[test]
fn dropping_a_subscription_whose_handler_panicked_does_not_panic() {
    let feed: Feed<u32, u32> = Feed::new();
    let (tx, rx) = mpsc::channel();
    let sub = feed.on(WatchOptions::all(), move |_| {
        tx.send(()).unwrap();
        panic!("once");
    });
    feed.put(1, 1).unwrap();
    rx.recv().unwrap();
    drop(sub);
    feed.put(2, 2).unwrap();
}
