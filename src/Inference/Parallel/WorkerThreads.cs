using System.Runtime.ExceptionServices;
using TorchSharp;

namespace MoeServe.Inference.Parallel;

/// <summary>
/// Long-lived threads that run a set of jobs at once, job 0 on the caller: one thread per expert-parallel
/// device (so every device's experts of a layer run at the same time and the layer waits for the slowest, as
/// in real expert-parallel serving), or the threads that share one CPU device's experts. libtorch has no
/// global lock, so ops from these threads overlap; grad mode is per thread, so each worker enters inference
/// mode for its whole life.
/// </summary>
public sealed class WorkerThreads : IDisposable
{
    private readonly Worker[] _workers;
    private readonly CountdownEvent _done = new(1);
    private readonly object _busy = new();

    /// <param name="count">Jobs run at once, the caller's included; count - 1 threads are started.</param>
    /// <param name="name">Thread name prefix (the worker's index is appended).</param>
    public WorkerThreads(int count, string name = "moeserve-expert-device")
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count));
        _workers = Enumerable.Range(1, count - 1).Select(i => new Worker($"{name}-{i}", _done)).ToArray();
    }

    /// <summary>Jobs run at once, the caller's included.</summary>
    public int Count => _workers.Length + 1;

    /// <summary>Runs <c>jobs[i]</c> on thread i (null: nothing to do; job 0 on the caller), all at once, and returns
    /// when every one has finished. While another caller has the threads (two parts of a step reaching the same
    /// experts' threads), the jobs run one after another on this caller instead.</summary>
    /// <exception cref="Exception">The first job's failure, rethrown on the caller after every job has finished.</exception>
    public void RunAll(IReadOnlyList<Action?> jobs)
    {
        if (jobs.Count != Count) throw new ArgumentException($"{jobs.Count} jobs for {Count} threads");
        if (!Monitor.TryEnter(_busy))
        {
            foreach (var job in jobs) job?.Invoke();
            return;
        }
        try { RunOnThreads(jobs); }
        finally { Monitor.Exit(_busy); }
    }

    private void RunOnThreads(IReadOnlyList<Action?> jobs)
    {
        _done.Reset(jobs.Skip(1).Count(j => j is not null) + 1);
        // libtorch's intra-op thread count is per thread (OpenMP): each worker takes the caller's, so a job runs
        // with the same kernels, and the same rounding, as on the caller, and no worker fans out to every core.
        int intraOpThreads = torch.get_num_threads();
        for (int d = 1; d < jobs.Count; d++)
            if (jobs[d] is { } job) _workers[d - 1].Post(job, intraOpThreads);
        Exception? first = null;
        try { jobs[0]?.Invoke(); }
        catch (Exception e) { first = e; }
        _done.Signal();
        _done.Wait();
        foreach (var w in _workers) first ??= w.TakeFailure();
        if (first is not null) ExceptionDispatchInfo.Capture(first).Throw();
    }

    public void Dispose()
    {
        foreach (var w in _workers) w.Stop();
        _done.Dispose();
    }

    private sealed class Worker
    {
        private readonly SemaphoreSlim _start = new(0);
        private readonly CountdownEvent _done;
        private readonly Thread _thread;
        private Action? _job;
        private int _intraOpThreads; // wanted by the posted job
        private int _intraOpThreadsSet; // last set on this thread (0: never)
        private Exception? _failure;
        private volatile bool _stopping;

        public Worker(string name, CountdownEvent done)
        {
            _done = done;
            _thread = new Thread(Loop) { IsBackground = true, Name = name };
            _thread.Start();
        }

        public void Post(Action job, int intraOpThreads)
        {
            _job = job;
            _intraOpThreads = intraOpThreads;
            _start.Release();
        }

        public Exception? TakeFailure()
        {
            var f = _failure;
            _failure = null;
            return f;
        }

        public void Stop()
        {
            _stopping = true;
            _start.Release();
            _thread.Join();
            _start.Dispose();
        }

        private void Loop()
        {
            using var inference = torch.inference_mode();
            while (true)
            {
                _start.Wait();
                if (_stopping) return;
                if (_intraOpThreads != _intraOpThreadsSet)
                {
                    torch.set_num_threads(_intraOpThreads);
                    _intraOpThreadsSet = _intraOpThreads;
                }
                try { _job!(); }
                catch (Exception e) { _failure = e; }
                _job = null;
                _done.Signal();
            }
        }
    }
}
