using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Casts that cost nothing when the dtype already matches. On CPU a decode step is bound by the number of
/// tensor operations (a few microseconds each), and a same-dtype .to() still is one.
/// </summary>
public static class TensorCasts
{
    public static Tensor AsFloat32(this Tensor t) => t.dtype == ScalarType.Float32 ? t : t.to(ScalarType.Float32);

    public static Tensor As(this Tensor t, ScalarType dtype) => t.dtype == dtype ? t : t.to(dtype);

    /// <summary>The tensor itself on the CPU, else a host copy (reading values needs host memory).</summary>
    public static Tensor OnCpu(this Tensor t) => t.device_type == TorchSharp.DeviceType.CPU ? t : t.cpu();
}
