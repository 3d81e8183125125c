using MoeServe.Routing;

namespace MoeServe.Cli.Eval;

/// <summary>
/// The balance metrics of shared/design/routing-policies.md for one layer of one step (one forward pass):
/// I = max_e n_e / mean_e n_e, MaxVio = I - 1, and the device imbalance I_dev = max_d N_d / mean_d N_d
/// with experts placed on devices in equal contiguous blocks.
/// </summary>
public static class LoadMetrics
{
    /// <param name="loads">[E] token-expert pairs executed per expert.</param>
    /// <returns>I >= 1; a layer that executed no pair at all (everything dropped) counts as balanced, 1.</returns>
    public static double Imbalance(ReadOnlySpan<long> loads)
    {
        long sum = 0, max = 0;
        foreach (var n in loads) { sum += n; max = Math.Max(max, n); }
        return sum == 0 ? 1.0 : max / ((double)sum / loads.Length);
    }

    /// <summary>Whether <paramref name="devices"/> devices can hold <paramref name="experts"/> experts in equal contiguous blocks.</summary>
    public static bool CanPlace(int experts, int devices) => devices >= 1 && devices <= experts && experts % devices == 0;

    /// <summary>Pairs per device: device d holds experts [d E/D, (d+1) E/D).</summary>
    /// <param name="loads">[E] pairs per expert.</param>
    /// <returns>[D] pairs per device.</returns>
    public static long[] DeviceLoads(ReadOnlySpan<long> loads, int devices)
    {
        if (!CanPlace(loads.Length, devices))
            throw new ArgumentException($"{loads.Length} experts do not split into {devices} equal contiguous blocks");
        return ExpertPlacement.Contiguous(1, loads.Length, devices).DeviceLoads(0, loads);
    }

    /// <summary>I_dev of one layer and step under contiguous placement on <paramref name="devices"/> devices.</summary>
    public static double DeviceImbalance(ReadOnlySpan<long> loads, int devices) => Imbalance(DeviceLoads(loads, devices));
}
