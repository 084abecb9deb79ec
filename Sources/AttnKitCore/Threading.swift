#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// The number of threads kernels use, the calling thread included.
///
/// Starts as `ATTNKIT_NUM_THREADS` (read once) or the number of online CPUs.
public enum ThreadSettings {
    private static let configured = Atomic<Int>(0)

    private static let defaultCount: Int = {
        if let raw = getenv("ATTNKIT_NUM_THREADS"),
           let parsed = Int(String(cString: raw)), parsed >= 1 {
            return min(parsed, maxThreads)
        }
        return max(1, min(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), maxThreads))
    }()

    /// An upper bound that keeps a bad setting from spawning thousands of threads.
    public static let maxThreads = 1024   // ATTNKIT_MAX_THREADS in attnkit.h (the C client test checks both)

    public static var numThreads: Int {
        let value = configured.load(ordering: .relaxed)
        return value > 0 ? value : defaultCount
    }

    /// Sets the thread count. Throws if `count` is not in 1...maxThreads.
    public static func setNumThreads(_ count: Int) throws {
        guard count >= 1 && count <= maxThreads else {
            throw AttnError.invalidArgument(
                argument: "num_threads", rule: "must be in 1...\(maxThreads), got \(count)")
        }
        configured.store(count, ordering: .relaxed)
    }
}

/// Hands out task indices to the workers of one parallel loop, and counts the
/// started threads that are done with it.
private final class TaskCounter {
    let next = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
}

private final class WorkerContext {
    let body: (_ task: Int, _ worker: Int) -> Void
    let counter: TaskCounter
    let count: Int
    let worker: Int
    init(body: @escaping (Int, Int) -> Void, counter: TaskCounter, count: Int, worker: Int) {
        self.body = body; self.counter = counter; self.count = count; self.worker = worker
    }
    func run() {
        while true {
            let task = counter.next.add(1, ordering: .relaxed).oldValue
            if task >= count { return }
            body(task, worker)
        }
    }
}

/// Runs `body(task, worker)` for every task in 0..<count on up to `threads`
/// threads (the caller is worker 0). Tasks are handed out dynamically, so a
/// task's result must not depend on which worker runs it; `worker` is only for
/// picking per-thread scratch space.
///
/// Threads are started per call; if the system refuses one, the loop simply
/// runs on fewer threads.
public func parallelFor(count: Int, threads: Int, _ body: @escaping (_ task: Int, _ worker: Int) -> Void) {
    let workers = max(1, min(threads, count))
    if workers == 1 {
        for task in 0..<count { body(task, 0) }
        return
    }
    let counter = TaskCounter()
    // Detached threads, and the caller waits for their last tasks by polling the
    // counter: pthread_join would sleep until the kernel has torn the thread
    // down, about 0.1 ms per call (benchmarks/NOTES.md, "thread joins").
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var started = 0
    for worker in 1..<workers {
        let context = WorkerContext(body: body, counter: counter, count: count, worker: worker)
        let raw = Unmanaged.passRetained(context).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, &attributes, { arg in
            let context = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
            context.run()
            // Releasing: the caller's acquiring load then sees every write of the
            // thread's tasks. Nothing of the loop is touched after this.
            context.counter.finished.add(1, ordering: .releasing)
            return nil
        }, raw)
        if status == 0 {
            started += 1
        } else {
            Unmanaged<WorkerContext>.fromOpaque(raw).release()
            break
        }
    }
    WorkerContext(body: body, counter: counter, count: count, worker: 0).run()
    while counter.finished.load(ordering: .acquiring) < started { sched_yield() }
}
