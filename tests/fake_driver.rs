//! The emulated CUDA driver's stream semantics (tests/kernel_emu/fake_cuda.cpp,
//! fake_streams.h), through cudarc as the backend calls it: work queued on a stream runs
//! when the host waits for it, so code that reads or rewrites host memory without the
//! wait CUDA requires sees what it might see on a GPU. These are the rules the emulated
//! GPU suites (`RILL_GPU_TESTS=emulated`) rely on to catch a missing synchronisation;
//! each test pins one of them, and fails if the driver ran work early or late.
//!
//! Built only with the `kernel-emu` feature (`cargo test --features kernel-emu --test
//! fake_driver`); the driver is loaded from the build's `RILL_FAKE_CUDA_DIR`, whatever
//! device the machine has.

#![cfg(feature = "kernel-emu")]

mod gpu_harness;

use std::sync::{Arc, Mutex, MutexGuard, Once};

use cudarc::driver::sys::{CUevent_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, PinnedHostSlice};

/// The emulated device and a lock held for the test's length: the tests share one device
/// (this process's), and a synchronous call in one (a pinned free, a context-wide wait)
/// runs every stream's queued work, which would let another test's "not run yet" check
/// see its work done.
fn context() -> (MutexGuard<'static, ()>, Arc<CudaContext>) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static LOAD: Once = Once::new();
    LOAD.call_once(|| {
        if std::env::var("RILL_FAKE_CUDA_STREAMS").as_deref() == Ok("sync") {
            panic!("these tests pin the deferred streams; unset RILL_FAKE_CUDA_STREAMS=sync");
        }
        if let Err(e) = gpu_harness::load_emulated_driver() {
            panic!("loading the emulated driver: {e}");
        }
    });
    let ctx = CudaContext::new(0).expect("the emulated device");
    // SAFETY: as the backend does (device.rs): the tests order their own work.
    unsafe { ctx.disable_event_tracking() };
    (serial, ctx)
}

fn pinned(ctx: &Arc<CudaContext>, fill: u8) -> PinnedHostSlice<u8> {
    // SAFETY: filled below before anything reads it.
    let mut p = unsafe { ctx.alloc_pinned::<u8>(4) }.expect("pinned memory");
    p.as_mut_slice().expect("pinned slice").fill(fill);
    p
}

fn read(stream: &Arc<CudaStream>, dev: &CudaSlice<u8>) -> Vec<u8> {
    let mut out = vec![0u8; dev.len()];
    stream
        .memcpy_dtoh(dev, &mut out)
        .expect("copy to pageable memory");
    out
}

#[test]
fn copy_from_page_locked_memory_reads_it_when_it_runs() {
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    let mut host = pinned(&ctx, 1);
    let mut dev = s.alloc_zeros::<u8>(4).expect("alloc");
    let src: &[u8] = host.as_slice().expect("slice");
    s.memcpy_htod(src, &mut dev).expect("queue the copy");
    // Rewritten before any wait: the queued copy has not run yet and reads the new bytes.
    host.as_mut_slice().expect("slice").fill(2);
    s.synchronize().expect("sync");
    assert_eq!(read(&s, &dev), [2; 4]);
}

#[test]
fn copy_from_pageable_memory_is_staged_at_the_call() {
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    let mut host = vec![1u8; 4];
    let mut dev = s.alloc_zeros::<u8>(4).expect("alloc");
    s.memcpy_htod(&host, &mut dev).expect("queue the copy");
    host.fill(2);
    s.synchronize().expect("sync");
    assert_eq!(read(&s, &dev), [1; 4]);
}

#[test]
fn copy_to_page_locked_memory_lands_after_the_wait() {
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    let dev = s.clone_htod(&[7u8; 4]).expect("upload");
    let mut host = pinned(&ctx, 0);
    {
        let dst: &mut [u8] = host.as_mut_slice().expect("slice");
        s.memcpy_dtoh(&dev, dst).expect("queue the copy");
        assert_eq!(dst, [0; 4], "the copy ran before the host waited");
    }
    s.synchronize().expect("sync");
    assert_eq!(host.as_slice().expect("slice"), [7; 4]);
}

#[test]
fn an_event_is_not_ready_until_its_work_ran() {
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    let dev = s.clone_htod(&[3u8; 4]).expect("upload");
    let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = s.record_event(timing).expect("record");
    let _copy = s.clone_dtod(&dev).expect("queue a copy");
    let end = s.record_event(timing).expect("record");
    // The first query finds the work queued (NOT_READY) and lets it run.
    assert!(!end.try_is_complete().expect("query"));
    assert!(end.try_is_complete().expect("query"));
    assert!(start.elapsed_ms(&end).expect("elapsed") >= 0.0);
    // cudarc's default events are created without timing, as the driver then refuses.
    let (a, b) = (
        s.record_event(None).expect("record"),
        s.record_event(None).expect("record"),
    );
    assert!(
        a.elapsed_ms(&b).is_err(),
        "elapsed time of events without timing"
    );
}

#[test]
fn the_latest_record_of_an_event_decides_when_it_is_done() {
    let (_serial, ctx) = context();
    let (a, b) = (ctx.new_stream().expect("a"), ctx.new_stream().expect("b"));
    let mut on_b = b.alloc_zeros::<u8>(4).expect("alloc");
    b.synchronize().expect("sync");
    let event = ctx.new_event(None).expect("event");
    event.record(&a).expect("record on a");
    b.memcpy_htod(&[6u8; 4], &mut on_b).expect("queue on b");
    event.record(&b).expect("record again, on b");
    // Running a's queue runs the first record, which must not complete the second: the
    // wait below must still run b's copy. (Reads go through a, which runs only a's queue.)
    a.synchronize().expect("sync a");
    assert_eq!(read(&a, &on_b), [0; 4], "b's copy ran with a's queue");
    event.synchronize().expect("wait for the event");
    assert_eq!(
        read(&a, &on_b),
        [6; 4],
        "the event's wait did not run b's copy"
    );
    assert!(event.try_is_complete().expect("query"));
}

#[test]
fn a_stream_waits_for_another_streams_event() {
    let (_serial, ctx) = context();
    let (a, b) = (ctx.new_stream().expect("a"), ctx.new_stream().expect("b"));
    let src = a.alloc_zeros::<u8>(4).expect("alloc");
    let mut ordered = b.alloc_zeros::<u8>(4).expect("alloc");
    let mut unordered = b.alloc_zeros::<u8>(4).expect("alloc");
    a.synchronize().expect("sync");
    b.synchronize().expect("sync");
    let mut src = src;
    a.memcpy_htod(&[5u8; 4], &mut src).expect("queue on a");
    // Without a wait, b's copy runs first (a's work is still queued)...
    b.memcpy_dtod(&src, &mut unordered).expect("queue on b");
    // ...with one, after a's copy, though only b is waited for.
    let done = a.record_event(None).expect("record");
    b.wait(&done).expect("wait");
    b.memcpy_dtod(&src, &mut ordered).expect("queue on b");
    b.synchronize().expect("sync b");
    assert_eq!(read(&b, &unordered), [0; 4]);
    assert_eq!(read(&b, &ordered), [5; 4]);
}

#[test]
fn a_graph_reads_page_locked_inputs_at_each_launch() {
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    let mut host = pinned(&ctx, 1);
    let mut dev = s.alloc_zeros::<u8>(4).expect("alloc");
    let mut out = s.alloc_zeros::<u8>(4).expect("alloc");
    s.synchronize().expect("sync");
    s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .expect("begin capture");
    s.memcpy_htod(host.as_slice().expect("slice"), &mut dev)
        .expect("capture the copy");
    s.memcpy_dtod(&dev, &mut out).expect("capture the copy");
    let graph = s
        .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags_enum(0))
        .expect("end capture")
        .expect("a graph");
    assert_eq!(read(&s, &out), [0; 4], "a capture does not run its work");
    for fill in [4u8, 9] {
        host.as_mut_slice().expect("slice").fill(fill);
        graph.launch().expect("launch");
        assert_eq!(read(&s, &out), [fill; 4]);
    }
}

#[test]
fn a_capture_refuses_allocations_and_waits() {
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    let flags = cudarc::driver::sys::CUgraphInstantiate_flags_enum(0);
    s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .expect("begin capture");
    assert!(
        s.alloc_zeros::<u8>(4).is_err(),
        "an allocation inside a capture"
    );
    assert!(s.end_capture(flags).is_err(), "the capture was invalidated");

    s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .expect("begin capture");
    assert!(s.synchronize().is_err(), "a wait inside a capture");
    assert!(s.end_capture(flags).is_err(), "the capture was invalidated");

    let dev = s.alloc_zeros::<u8>(4).expect("alloc after the captures");
    assert_eq!(read(&s, &dev), [0; 4]);
}

#[test]
fn a_thread_needs_a_current_context() {
    let (_serial, ctx) = context();
    std::thread::spawn(move || {
        use cudarc::driver::result;
        // A new thread has no current context: calls that act on it fail, as on a GPU.
        let unbound = result::stream::create(result::stream::StreamKind::NonBlocking);
        assert!(unbound.is_err(), "a stream created with no current context");
        ctx.bind_to_thread().expect("bind");
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .expect("a stream once the context is current");
        // SAFETY: the stream was just created here and is not used again.
        unsafe { result::stream::destroy(stream) }.expect("destroy");
    })
    .join()
    .expect("the thread");
}

/// The mapping holding `addr` in this process (`/proc/self/maps`): its range and its
/// protection ("rw-p", "---p"), or `None` where nothing is mapped.
fn mapping_at(addr: u64) -> Option<(u64, u64, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        (start <= addr && addr < end).then(|| (start, end, fields.next().unwrap_or("").to_owned()))
    })
}

fn protection_at(addr: u64) -> Option<String> {
    mapping_at(addr).map(|(_, _, p)| p)
}

#[test]
fn device_buffers_end_at_a_guard_page_and_are_unmapped_when_freed() {
    use cudarc::driver::DevicePtr;
    let (_serial, ctx) = context();
    let s = ctx.new_stream().expect("stream");
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    for len in [1usize, 100, 4096, 5000] {
        let dev = s.alloc_zeros::<u8>(len).expect("alloc");
        let (p, guard) = dev.device_ptr(&s);
        drop(guard);
        assert_eq!(p % 256, 0, "{len} bytes: not 256-byte aligned");
        let end = p + len as u64;
        let guard_page = end.div_ceil(page) * page;
        assert!(
            guard_page - end < 256,
            "{len} bytes: {} bytes before the guard",
            guard_page - end
        );
        assert_eq!(
            protection_at(end - 1).as_deref(),
            Some("rw-p"),
            "{len} bytes: last byte"
        );
        assert_eq!(
            protection_at(guard_page).as_deref(),
            Some("---p"),
            "{len} bytes: after the end"
        );
        let held = mapping_at(p);
        drop(dev);
        s.synchronize().expect("the free runs");
        // Gone: nothing is mapped there, or a new mapping (another thread's) took the place.
        assert_ne!(
            mapping_at(p),
            held,
            "{len} bytes: still mapped after the free"
        );
    }
}
