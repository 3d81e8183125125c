using System.Diagnostics;
using MoeServe.Inference.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Parallel;

/// <summary>What each device did for one MoE layer in one step.</summary>
/// <param name="Pairs">[D] token-expert pairs executed on each device.</param>
/// <param name="Seconds">[D] wall time of each device's share: copy in, its experts, copy back.</param>
/// <param name="WallSeconds">Wall time of the whole expert phase (dispatch to combine), what the layer waited.</param>
public sealed record DeviceStepTiming(long[] Pairs, double[] Seconds, double WallSeconds);

/// <summary>
/// The experts of one MoE layer spread over the devices of an <see cref="ExpertParallelPlan"/>: each device
/// holds an <see cref="ExpertBank"/> of its replicas, with their weights on that device. <see cref="Arrange"/>
/// orders the step's pairs device-major (a replicated expert's pairs split evenly over its replicas), so each
/// device's rows are one contiguous slice; every device copies its slice in, runs its experts, and copies
/// the result back to the caller's device.
/// </summary>
/// <remarks>Legend: E experts, H hidden size, N token-expert pairs, D devices, R replicas (E plus redundant ones).</remarks>
public sealed class ShardedExperts : IDisposable
{
    private readonly ExpertBank?[] _banks;                         // [D]; null when a device holds no replica
    private readonly (int Expert, int Replica)[][] _slots;         // [D] the replicas on each device, by expert
    private readonly int[][] _replicas;                             // [E] devices holding each expert
    private readonly Device[] _devices;
    private readonly WorkerThreads? _workers;
    private readonly WorkerThreads?[] _expertThreads;               // [D] threads sharing each CPU device's experts

    /// <param name="gateUp">Per expert [2F, H] (w1 rows then w3 rows), on any device.</param>
    /// <param name="down">Per expert [H, F].</param>
    /// <param name="replicas">[E] devices holding a replica of each expert (indexes into <paramref name="devices"/>).</param>
    /// <param name="workers">Threads to run the devices at once; null runs them in turn on the caller.</param>
    /// <param name="expertThreads">[D] threads that share one device's experts (null entries, or no array: one thread).</param>
    public ShardedExperts(IReadOnlyList<Tensor> gateUp, IReadOnlyList<Tensor> down, int[][] replicas, Device[] devices, WorkerThreads? workers,
        WorkerThreads?[]? expertThreads = null)
    {
        _expertThreads = expertThreads ?? new WorkerThreads?[devices.Length];
        if (_expertThreads.Length != devices.Length) throw new ArgumentException($"expert threads for {_expertThreads.Length} devices, {devices.Length} devices");
        if (replicas.Length != gateUp.Count) throw new ArgumentException($"placement of {replicas.Length} experts for {gateUp.Count}");
        _devices = devices;
        _workers = workers;
        _replicas = replicas;
        _slots = Enumerable.Range(0, devices.Length).Select(d => Enumerable.Range(0, replicas.Length)
            .Where(e => replicas[e].Contains(d)).Select(e => (e, Array.IndexOf(replicas[e], d))).ToArray()).ToArray();
        _banks = new ExpertBank?[devices.Length];
        for (int d = 0; d < devices.Length; d++)
        {
            var mine = _slots[d].Select(s => s.Expert).ToArray();
            if (mine.Length == 0) continue;
            // Weights move to their device once, at load; the bank stacks them into tensors of its own.
            var g = mine.Select(e => gateUp[e].to(devices[d])).ToList();
            var w = mine.Select(e => down[e].to(devices[d])).ToList();
            _banks[d] = new ExpertBank(g, w);
            foreach (var (moved, original) in g.Zip(mine.Select(e => gateUp[e])).Concat(w.Zip(mine.Select(e => down[e]))))
                if (!ReferenceEquals(moved, original)) moved.Dispose();
        }
    }

    public int Devices => _devices.Length;

    /// <summary>Orders the pairs device-major: for each device, for each replica on it, that replica's share of its expert's pairs.</summary>
    /// <param name="byExpert">[N] pair indexes sorted by expert (counts[0] pairs of expert 0, then expert 1, ...).</param>
    /// <param name="counts">[E] pairs per expert.</param>
    /// <returns>[N] the pair indexes in execution order, and [R] rows per replica in device-major replica order.</returns>
    public (long[] Order, long[] ReplicaRows) Arrange(long[] byExpert, long[] counts)
    {
        var start = new long[counts.Length];
        for (int e = 1; e < counts.Length; e++) start[e] = start[e - 1] + counts[e - 1];
        var order = new long[byExpert.Length];
        var rows = new List<long>(counts.Length);
        long next = 0;
        foreach (var device in _slots)
            foreach (var (expert, replica) in device)
            {
                var (offset, count) = MoeServe.Routing.ExpertPlacement.Share(counts[expert], replica, _replicas[expert].Length);
                Array.Copy(byExpert, start[expert] + offset, order, next, count);
                next += count;
                rows.Add(count);
            }
        return (order, rows.ToArray());
    }

    /// <summary>Runs every device's experts on its rows.</summary>
    /// <param name="inputs">[N, H] rows in the order <see cref="Arrange"/> gave.</param>
    /// <param name="replicaRows">[R] rows per replica, as <see cref="Arrange"/> gave them.</param>
    /// <returns>[N, H] expert outputs in the order of <paramref name="inputs"/>, on its device, and what each device did.</returns>
    public (Tensor Output, DeviceStepTiming Timing) Run(Tensor inputs, long[] replicaRows)
    {
        long started = Stopwatch.GetTimestamp();
        int devices = _devices.Length;
        var pairs = new long[devices];
        var seconds = new double[devices];
        var outputs = new Tensor?[devices];
        var jobs = new Action?[devices];
        long row = 0;
        int replica = 0;
        for (int d = 0; d < devices; d++)
        {
            var counts = replicaRows.AsSpan(replica, _slots[d].Length).ToArray();
            replica += counts.Length;
            long rows = counts.Sum();
            pairs[d] = rows;
            if (rows == 0) continue;
            var slice = inputs.narrow(0, row, rows); // [n_d, H], a view owned by the caller's scope
            row += rows;
            int device = d;
            jobs[d] = () =>
            {
                long start = Stopwatch.GetTimestamp();
                using (var scope = NewDisposeScope())
                {
                    var output = _banks[device]!.Run(ToDevice(slice, _devices[device]), counts, _expertThreads[device]).to(inputs.device); // [n_d, H]
                    // GPU work is asynchronous: wait for this device, so its busy time is its real time.
                    if (_devices[device].type == DeviceType.CUDA) torch.cuda.synchronize(_devices[device]);
                    // Handed to the caller's thread, which disposes it; this thread's scope must not.
                    outputs[device] = output.DetachFromDisposeScope();
                }
                seconds[device] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            };
        }
        try
        {
            if (_workers is not null) _workers.RunAll(jobs);
            else foreach (var job in jobs) job?.Invoke();
            var produced = outputs.Where(o => o is not null).Select(o => o!).ToList();
            // alias(): a handle in the caller's dispose scope; the detached handles are freed below.
            var result = produced.Count switch
            {
                0 => inputs.new_empty([0, inputs.shape[1]]),
                1 => produced[0].alias(),
                _ => torch.cat(produced, 0),
            };
            return (result, new DeviceStepTiming(pairs, seconds, Stopwatch.GetElapsedTime(started).TotalSeconds));
        }
        finally
        {
            foreach (var o in outputs) o?.Dispose();
        }
    }

    /// <summary>Copies rows to an expert's device; host rows bound for a GPU go through pinned memory so the copy can be asynchronous.</summary>
    private static Tensor ToDevice(Tensor rows, Device device)
    {
        if (rows.device.type == device.type && rows.device.index == device.index) return rows;
        return rows.device.type == DeviceType.CPU && device.type == DeviceType.CUDA
            ? rows.contiguous().pin_memory().to(device, non_blocking: true)
            : rows.to(device);
    }

    public void Dispose()
    {
        foreach (var bank in _banks) bank?.Dispose();
    }
}
