//! A stream whose server stops answering: a pipeline playing through a [`TcpProxy`] in front of
//! a real server, which then holds the request under way, so that a test can check that stopping
//! or seeking does not wait for it.

use std::time::Duration;

use gst::prelude::*;

use super::tcp_proxy::TcpProxy;

/// Whether `work` ends within `limit`, run on a thread of its own: a call that hangs fails its
/// test after `limit` rather than holding it up.
pub fn ends_within(limit: Duration, work: impl FnOnce() + Send + 'static) -> bool {
    let (ended, end) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        work();
        let _ = ended.send(());
    });
    end.recv_timeout(limit).is_ok()
}

/// Asserts that stopping `pipeline` does not wait for its server (within 30 s, where the held
/// request's timeout is 10 minutes).
pub fn assert_stops_at_once(pipeline: gst::Pipeline, what: &str) {
    assert!(
        ends_within(Duration::from_secs(30), move || {
            pipeline.set_state(gst::State::Null).unwrap();
        }),
        "{what}: stopping waited for the server"
    );
}

/// Asserts that a flushing seek to the start of `pipeline` does not wait for its server.
pub fn assert_seeks_at_once(pipeline: &gst::Pipeline, what: &str) {
    let seeking = pipeline.clone();
    assert!(
        ends_within(Duration::from_secs(30), move || {
            seeking
                .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO)
                .unwrap();
        }),
        "{what}: the seek waited for the server"
    );
}

/// `description(proxy address)` (ending in an appsink named "sink", one request in flight and a
/// request timeout of 10 minutes) playing through a proxy in front of `server` (`host:port`),
/// its first frame out.
pub fn stream_through_a_proxy(
    server: &str,
    description: impl FnOnce(&str) -> String,
    what: &str,
) -> (gst::Pipeline, gst_app::AppSink, TcpProxy) {
    let proxy = TcpProxy::start(server);
    let (pipeline, sink) = super::playing(&description(&proxy.address));
    assert!(
        sink.try_pull_sample(gst::ClockTime::from_seconds(60))
            .is_some(),
        "{what}: a first frame through the proxy"
    );
    (pipeline, sink, proxy)
}

/// As [`stream_through_a_proxy`], the proxy then no longer passing answers, once a request is
/// held there: the server never answers it, and the request timeout is far off.
pub fn stream_with_a_held_request(
    server: &str,
    description: impl FnOnce(&str) -> String,
    what: &str,
) -> (gst::Pipeline, gst_app::AppSink, TcpProxy) {
    let (pipeline, sink, proxy) = stream_through_a_proxy(server, description, what);
    proxy.freeze_open_connections();
    assert!(
        proxy.wait_for_a_held_request(Duration::from_secs(60)),
        "{what}: no request went out after the first frame"
    );
    (pipeline, sink, proxy)
}
