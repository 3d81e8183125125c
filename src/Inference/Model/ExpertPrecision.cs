using MoeServe.Inference.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Chooses the dtype of the expert weights and products. The experts hold most of an MoE model's weights
/// and, in batched decoding and prefill, most of its arithmetic; bfloat16 halves what they read and, where
/// the hardware multiplies bfloat16 natively, runs several rows per expert about twice as fast as float32.
/// </summary>
public static class ExpertPrecision
{
    public const string Auto = "auto";

    /// <summary>The dtype for a setting of "auto", "float32" or "bfloat16".</summary>
    /// <remarks>"auto" picks bfloat16 only where it costs no weight precision and no speed: the checkpoint is
    /// stored in bfloat16 (so the weights stay exact and the products round as the model was trained), and the
    /// device computes bfloat16 products natively (CUDA, or a CPU with AVX-512 BF16 or AMX). Otherwise the
    /// experts run in <paramref name="computeDtype"/>, like the rest of the model.</remarks>
    /// <param name="cpuHasBfloat16">Whether the CPU has bfloat16 dot products (see <see cref="CpuHasBfloat16DotProducts"/>).</param>
    public static ScalarType Resolve(string setting, ModelConfig config, ScalarType computeDtype, Device device, bool cpuHasBfloat16) => setting switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        Auto => config.TorchDtype == "bfloat16" && (device.type == DeviceType.CUDA || cpuHasBfloat16) ? ScalarType.BFloat16 : computeDtype,
        _ => throw new ArgumentException($"expert dtype '{setting}' is not auto, float32 or bfloat16"),
    };

    /// <summary>Whether this CPU multiplies bfloat16 natively (Linux: the avx512_bf16 or amx_bf16 flag in /proc/cpuinfo).</summary>
    /// <remarks>Elsewhere, or where the file cannot be read, the answer is no: bfloat16 is then only chosen explicitly.</remarks>
    public static bool CpuHasBfloat16DotProducts(string cpuinfoPath = "/proc/cpuinfo")
    {
        try
        {
            foreach (var line in File.ReadLines(cpuinfoPath))
                if (line.StartsWith("flags", StringComparison.Ordinal))
                    return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(f => f is "avx512_bf16" or "amx_bf16");
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }
}
