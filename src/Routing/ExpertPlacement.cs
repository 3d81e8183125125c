namespace MoeServe.Routing;

/// <summary>
/// Where every expert of every layer lives under expert parallelism: <c>DeviceOf[layer][expert]</c> is a
/// device index in [0, Devices). Pure data plus the three ways to build it; expanded_drop reads it for
/// its "local" experts and the MoE layer for its dispatch.
/// </summary>
public sealed class ExpertPlacement
{
    private ExpertPlacement(int devices, int[][] deviceOf, string mode)
    {
        Devices = devices;
        DeviceOf = deviceOf;
        Mode = mode;
    }

    public int Devices { get; }

    /// <summary>[layer][expert] device index.</summary>
    public int[][] DeviceOf { get; }

    /// <summary>contiguous, explicit or load_aware: how it was built.</summary>
    public string Mode { get; }

    public int Layers => DeviceOf.Length;

    /// <summary>[E] device of each expert of <paramref name="layer"/>.</summary>
    public int[] Layer(int layer) => DeviceOf[layer];

    /// <summary>Every expert on device 0.</summary>
    public static ExpertPlacement Single(int layers, int experts) => Contiguous(layers, experts, 1);

    /// <summary>Device d holds experts [d E/D, (d+1) E/D), the same in every layer (when D does not divide E the
    /// first E mod D devices hold one expert more).</summary>
    public static ExpertPlacement Contiguous(int layers, int experts, int devices)
    {
        CheckDevices(experts, devices);
        var map = new int[experts];
        int e = 0;
        for (int d = 0; d < devices; d++)
            for (int i = 0; i < experts / devices + (d < experts % devices ? 1 : 0); i++) map[e++] = d;
        return new ExpertPlacement(devices, Enumerable.Range(0, layers).Select(_ => (int[])map.Clone()).ToArray(), "contiguous");
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
        return new ExpertPlacement(devices, deviceOf.Select(r => (int[])r.Clone()).ToArray(), "explicit");
    }

    /// <summary>
    /// Spreads each layer's hot experts over the devices from recorded loads: the experts, heaviest first,
    /// each go to the least-loaded device that still has room (longest-processing-time packing, as
    /// expert-parallel load balancers do), every device holding the same number of experts as contiguous
    /// placement gives it (so memory per device does not change). Ties go to the lower device index, so the
    /// result is deterministic.
    /// </summary>
    /// <param name="loads">[layer][expert] recorded token-expert pairs (any window; only proportions matter).</param>
    public static ExpertPlacement LoadAware(long[][] loads, int experts, int devices)
    {
        CheckDevices(experts, devices);
        var slots = Contiguous(1, experts, devices).DeviceOf[0].GroupBy(d => d).Select(g => g.Count()).ToArray(); // experts per device
        var deviceOf = new int[loads.Length][];
        for (int l = 0; l < loads.Length; l++)
        {
            if (loads[l].Length != experts)
                throw new ArgumentException($"layer {l}: the load profile has {loads[l].Length} experts, the model has {experts}");
            var row = new int[experts];
            var deviceLoad = new long[devices];
            var used = new int[devices];
            foreach (int e in Enumerable.Range(0, experts).OrderByDescending(e => loads[l][e]).ThenBy(e => e))
            {
                int best = -1;
                for (int d = 0; d < devices; d++)
                    if (used[d] < slots[d] && (best < 0 || deviceLoad[d] < deviceLoad[best])) best = d;
                row[e] = best;
                deviceLoad[best] += loads[l][e];
                used[best]++;
            }
            deviceOf[l] = row;
        }
        return new ExpertPlacement(devices, deviceOf, "load_aware");
    }

    /// <summary>Pairs per device of one layer.</summary>
    /// <param name="expertLoads">[E] pairs per expert.</param>
    /// <returns>[D] pairs per device.</returns>
    public long[] DeviceLoads(int layer, ReadOnlySpan<long> expertLoads)
    {
        var result = new long[Devices];
        for (int e = 0; e < expertLoads.Length; e++) result[DeviceOf[layer][e]] += expertLoads[e];
        return result;
    }

    /// <summary>[E] the layer's experts in device-major order (device 0's experts ascending, then device 1's, ...).</summary>
    public int[] DeviceMajorOrder(int layer) =>
        Enumerable.Range(0, DeviceOf[layer].Length).OrderBy(e => DeviceOf[layer][e]).ThenBy(e => e).ToArray();

    private static void CheckDevices(int experts, int devices)
    {
        if (devices < 1 || devices > experts)
            throw new ArgumentException($"{devices} devices cannot each hold at least one of {experts} experts");
    }
}
