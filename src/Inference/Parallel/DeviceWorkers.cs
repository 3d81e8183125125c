using System.Runtime.ExceptionServices;
using TorchSharp;

namespace MoeServe.Inference.Parallel;

/// <summary>
/// One long-lived thread per expert-parallel device (device 0's work runs on the calling engine thread),
/// so that every device's experts of a layer run at the same time and the layer waits for the slowest,
/// as in real expert-parallel serving. libtorch has no global lock, so ops from these threads overlap;
/// grad mode is per thread, so each worker enters inference mode for its whole life.
/// </summary>
public sealed class DeviceWorkers : IDisposable
{
    private readonly Worker[] _workers;
    private readonly CountdownEvent _done = new(1);

    /// <param name="devices">Device count D; D - 1 threads are started.</param>
    public DeviceWorkers(int devices)
    {
        if (devices < 1) throw new ArgumentOutOfRangeException(nameof(devices));
        _workers = Enumerable.Range(1, devices - 1).Select(d => new Worker(d, _done)).ToArray();
    }

    public int Devices => _workers.Length + 1;

    /// <summary>Runs <c>jobs[d]</c> on device d's thread (null: nothing to do), all at once, and returns when every one has finished.</summary>
    /// <exception cref="Exception">The first job's failure, rethrown on the caller after every job has finished.</exception>
    public void RunAll(IReadOnlyList<Action?> jobs)
    {
        if (jobs.Count != Devices) throw new ArgumentException($"{jobs.Count} jobs for {Devices} devices");
        _done.Reset(jobs.Skip(1).Count(j => j is not null) + 1);
        for (int d = 1; d < jobs.Count; d++)
            if (jobs[d] is { } job) _workers[d - 1].Post(job);
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
        private Exception? _failure;
        private volatile bool _stopping;

        public Worker(int device, CountdownEvent done)
        {
            _done = done;
            _thread = new Thread(Loop) { IsBackground = true, Name = $"moeserve-expert-device-{device}" };
            _thread.Start();
        }

        public void Post(Action job)
        {
            _job = job;
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
                try { _job!(); }
                catch (Exception e) { _failure = e; }
                _job = null;
                _done.Signal();
            }
        }
    }
}
