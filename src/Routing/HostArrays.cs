using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>
/// Host copies of small tensors for the engine step. TorchSharp's <c>data&lt;T&gt;()</c> leaves finalizable objects
/// behind (three per call, as do <c>shape</c>, <c>split</c>, <c>chunk</c> and <c>cat</c> one each), which every
/// garbage collection must promote and finalize: with a few hundred per step, collections paused the engine for
/// 10-50 ms. The tensor's byte view leaves none.
/// </summary>
public static class HostArrays
{
    /// <summary>The elements of <paramref name="t"/> in row-major order, copied to a new array (empty for an empty tensor).</summary>
    /// <typeparam name="T">The tensor's element type (long for int64, float for float32).</typeparam>
    public static T[] ToHostArray<T>(this Tensor t) where T : unmanaged
    {
        using var host = t.device_type == TorchSharp.DeviceType.CPU ? t.contiguous() : t.cpu().contiguous();
        return MemoryMarshal.Cast<byte, T>(host.bytes).ToArray();
    }
}
