using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Parallel;

/// <summary>
/// How the experts of a model are spread: the devices (CUDA devices, or virtual CPU ranks that all map to
/// the CPU), which expert lives on which device in every layer, and whether the devices run one after
/// another or at the same time.
/// </summary>
/// <param name="Devices">[D] the libtorch device of each rank (virtual ranks repeat the CPU).</param>
/// <param name="Names">[D] the name of each rank in metrics and reports: cuda:N, or cpu:N for virtual ranks.</param>
/// <param name="Concurrent">One worker thread per device (true), or every device's work in turn on the engine
/// thread (false): slower, but each device's time is then measured without the others competing for the cores.</param>
/// <param name="ThreadsPerDevice">Threads that share a CPU device's experts in each layer (1: the device's own thread
/// alone). The layer's experts go to the threads busiest first; outputs are the same to the bit.</param>
public sealed record ExpertParallelPlan(Device[] Devices, string[] Names, ExpertPlacement Placement, bool Concurrent, int ThreadsPerDevice = 1)
{
    public int DeviceCount => Devices.Length;

    /// <summary>Every expert on <paramref name="device"/>: plain single-device execution.</summary>
    public static ExpertParallelPlan Single(Device device, int layers, int experts) =>
        new([device], [device.type == DeviceType.CUDA ? $"cuda:{Math.Max(0, device.index)}" : "cpu:0"], ExpertPlacement.Single(layers, experts), Concurrent: false);

    /// <summary><paramref name="ranks"/> virtual CPU ranks.</summary>
    public static ExpertParallelPlan Virtual(int ranks, ExpertPlacement placement, bool concurrent = true) =>
        new(Enumerable.Repeat(CPU, ranks).ToArray(), Enumerable.Range(0, ranks).Select(r => $"cpu:{r}").ToArray(), placement, concurrent);
}
