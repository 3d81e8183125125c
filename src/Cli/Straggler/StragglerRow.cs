namespace MoeServe.Cli.Straggler;

/// <summary>
/// One (devices, placement, policy) cell of the straggler benchmark, per engine step (one mixed batch),
/// summed over the MoE layers, as <see cref="StragglerPass.Combine"/> takes them from the repeats.
/// </summary>
/// <param name="WallMs">Measured wall time of the layers' expert phases with every device running at once (one worker thread each).</param>
/// <param name="ModelledMs">Modelled expert-parallel latency: sum over layers of the slowest device's time, each device's
/// share timed alone (devices run in turn, so none competes with another for this machine's cores).</param>
/// <param name="DeviceWorkMs">Sum over layers and devices of the device times: the work, whatever its spread.</param>
/// <param name="MaxDevicePairs">Sum over layers of the busiest device's token-expert pairs: the synthetic cluster's latency in pair units.</param>
/// <param name="MeanDeviceImbalance">Mean over layers and batches of I_dev = max_d / mean_d pairs.</param>
/// <param name="DroppedShare">Dropped token-expert pairs over T x k x layers.</param>
public sealed record StragglerRow(int Devices, string Placement, string Policy, double WallMs, double ModelledMs, double DeviceWorkMs,
    double MaxDevicePairs, double MeanDeviceImbalance, double DroppedShare)
{
    /// <summary>Vanilla's modelled latency over this row's (same devices and placement as the reference row).</summary>
    public double ModelledSpeedup { get; init; } = double.NaN;
    public double WallSpeedup { get; init; } = double.NaN;
    /// <summary>Speedup under the synthetic cost model: latency = busiest device's pairs x per-pair cost.</summary>
    public double CostModelSpeedup { get; init; } = double.NaN;
}
