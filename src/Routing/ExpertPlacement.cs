namespace MoeServe.Routing;

/// <summary>
/// Where every expert of every layer lives under expert parallelism. Each expert has one or more replicas,
/// each on a different device (<c>Replicas[layer][expert]</c>, primary first); without redundant experts
/// every expert has exactly one. A replicated expert's token-expert pairs are split evenly over its replicas
/// (<see cref="Share"/>). Pure data plus the ways to build it; expanded_drop reads the primary devices
/// (<see cref="DeviceOf"/>) for its "local" experts and the MoE layer reads the replicas for its dispatch.
/// </summary>
public sealed class ExpertPlacement
{
    private ExpertPlacement(int devices, int[][][] replicas, string mode)
    {
        Devices = devices;
        Replicas = replicas;
        DeviceOf = replicas.Select(layer => layer.Select(r => r[0]).ToArray()).ToArray();
        Mode = mode;
    }

    public int Devices { get; }

    /// <summary>[layer][expert] device of the expert's primary replica.</summary>
    public int[][] DeviceOf { get; }

    /// <summary>[layer][expert] devices holding a replica of the expert, primary first, all different.</summary>
    public int[][][] Replicas { get; }

    /// <summary>contiguous, explicit or load_aware: how it was built.</summary>
    public string Mode { get; }

    public int Layers => DeviceOf.Length;

    /// <summary>Replicas beyond one per expert, per layer.</summary>
    public int RedundantExperts => Replicas.Length == 0 ? 0 : Replicas[0].Sum(r => r.Length) - Replicas[0].Length;

    /// <summary>[E] primary device of each expert of <paramref name="layer"/>.</summary>
    public int[] Layer(int layer) => DeviceOf[layer];

    /// <summary>Every expert on device 0.</summary>
    public static ExpertPlacement Single(int layers, int experts) => Contiguous(layers, experts, 1);

    /// <summary>Device d holds experts [d E/D, (d+1) E/D), the same in every layer (when D does not divide E the
    /// first E mod D devices hold one expert more).</summary>
    public static ExpertPlacement Contiguous(int layers, int experts, int devices)
    {
        CheckDevices(experts, devices);
        var perDevice = SlotsPerDevice(experts, devices);
        var map = new int[experts];
        int e = 0;
        for (int d = 0; d < devices; d++)
            for (int i = 0; i < perDevice[d]; i++) map[e++] = d;
        return new ExpertPlacement(devices, Enumerable.Range(0, layers).Select(_ => map.Select(d => new[] { d }).ToArray()).ToArray(), "contiguous");
    }

    /// <summary>A map given by the operator, one row per layer.</summary>
    /// <exception cref="ArgumentException">A row has the wrong length, names a device outside [0, D), or leaves a device empty.</exception>
    public static ExpertPlacement Explicit(int[][] deviceOf, int experts, int devices)
    {
        CheckDevices(experts, devices);
        for (int l = 0; l < deviceOf.Length; l++)
        {
            var row = deviceOf[l];
            if (row.Length != experts)
                throw new ArgumentException($"layer {l}: the expert map has {row.Length} entries, the model has {experts} experts");
            if (row.FirstOrDefault(d => d < 0 || d >= devices, -1) is var bad && bad != -1)
                throw new ArgumentException($"layer {l}: device {bad} is outside 0..{devices - 1}");
            if (Enumerable.Range(0, devices).FirstOrDefault(d => !row.Contains(d), -1) is var empty && empty != -1)
                throw new ArgumentException($"layer {l}: device {empty} holds no expert");
        }
        return new ExpertPlacement(devices, deviceOf.Select(r => r.Select(d => new[] { d }).ToArray()).ToArray(), "explicit");
    }

    /// <summary>
    /// Spreads each layer's hot experts over the devices from recorded loads, as expert-parallel load balancers
    /// do. First the <paramref name="redundantExperts"/> extra replicas go, one at a time, to the expert with the
    /// most load per replica; then every replica (carrying load / replicas), heaviest first, goes to the
    /// least-loaded device that has room and no replica of the same expert yet (longest-processing-time packing).
    /// Every device holds the same number of replicas, give or take one, so memory per device stays even. Ties
    /// go to the lower index, so the result is deterministic.
    /// </summary>
    /// <param name="loads">[layer][expert] recorded token-expert pairs (any window; only proportions matter).</param>
    /// <param name="redundantExperts">Extra replicas per layer (0: pure packing), at most E (D - 1).</param>
    public static ExpertPlacement LoadAware(long[][] loads, int experts, int devices, int redundantExperts = 0)
    {
        CheckDevices(experts, devices);
        if (redundantExperts < 0 || redundantExperts > experts * (devices - 1))
            throw new ArgumentException($"{redundantExperts} redundant experts: between 0 and {experts * (devices - 1)} fit {experts} experts on {devices} devices");
        var room = SlotsPerDevice(experts + redundantExperts, devices);
        var replicas = new int[loads.Length][][];
        for (int l = 0; l < loads.Length; l++)
        {
            var load = loads[l];
            if (load.Length != experts)
                throw new ArgumentException($"layer {l}: the load profile has {load.Length} experts, the model has {experts}");
            var count = Enumerable.Repeat(1, experts).ToArray();
            for (int i = 0; i < redundantExperts; i++)
            {
                int hottest = Enumerable.Range(0, experts).Where(e => count[e] < devices)
                    .OrderByDescending(e => (double)load[e] / count[e]).ThenBy(e => e).First();
                count[hottest]++;
            }
            var deviceLoad = new double[devices];
            var used = new int[devices];
            var held = Enumerable.Range(0, experts).Select(_ => new List<int>()).ToArray();
            var slots = Enumerable.Range(0, experts).SelectMany(e => Enumerable.Range(0, count[e]).Select(r => (Expert: e, Replica: r)))
                .OrderByDescending(s => (double)load[s.Expert] / count[s.Expert]).ThenBy(s => s.Expert).ThenBy(s => s.Replica);
            foreach (var (e, _) in slots)
            {
                int best = -1;
                for (int d = 0; d < devices; d++)
                    if (used[d] < room[d] && !held[e].Contains(d) && (best < 0 || deviceLoad[d] < deviceLoad[best])) best = d;
                if (best < 0)
                    throw new ArgumentException($"layer {l}: cannot place {count[e]} replicas of expert {e} on different devices with room (use fewer redundant experts)");
                held[e].Add(best);
                deviceLoad[best] += (double)load[e] / count[e];
                used[best]++;
            }
            replicas[l] = held.Select(h => h.ToArray()).ToArray();
        }
        return new ExpertPlacement(devices, replicas, "load_aware");
    }

    /// <summary>The rows of an expert with <paramref name="rows"/> pairs that its replica <paramref name="replica"/> of
    /// <paramref name="replicas"/> runs: an even split, the first <c>rows mod replicas</c> replicas taking one more.</summary>
    /// <returns>Offset into the expert's rows and how many.</returns>
    public static (long Offset, long Count) Share(long rows, int replica, int replicas)
    {
        long basic = rows / replicas, extra = rows % replicas;
        return (replica * basic + Math.Min(replica, extra), basic + (replica < extra ? 1 : 0));
    }

    /// <summary>Pairs per device of one layer, replicated experts' pairs split as the dispatch splits them.</summary>
    /// <param name="expertLoads">[E] pairs per expert.</param>
    /// <returns>[D] pairs per device.</returns>
    public long[] DeviceLoads(int layer, ReadOnlySpan<long> expertLoads)
    {
        var result = new long[Devices];
        for (int e = 0; e < expertLoads.Length; e++)
        {
            var devices = Replicas[layer][e];
            for (int r = 0; r < devices.Length; r++) result[devices[r]] += Share(expertLoads[e], r, devices.Length).Count;
        }
        return result;
    }

    /// <summary>[D] how many of <paramref name="slots"/> replicas each device holds: even, the first devices one more.</summary>
    private static int[] SlotsPerDevice(int slots, int devices) =>
        Enumerable.Range(0, devices).Select(d => slots / devices + (d < slots % devices ? 1 : 0)).ToArray();

    private static void CheckDevices(int experts, int devices)
    {
        if (devices < 1 || devices > experts)
            throw new ArgumentException($"{devices} devices cannot each hold at least one of {experts} experts");
    }
}
