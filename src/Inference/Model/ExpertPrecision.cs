using MoeServe.Inference.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Chooses the dtype of the expert weights and products. The experts hold most of an MoE model's weights
/// and, in batched decoding and prefill, most of its arithmetic, and with a few rows per expert a product costs
/// mostly reading its weights: 16-bit weights halve that. On CPU, float16 experts run FBGEMM's packed float16
/// products with float32 rows (see <see cref="HalfPackedGemm"/>); float32 experts whose weights bfloat16 holds
/// run <see cref="Bf16SwiGluKernel"/> on them as bfloat16, with float32 rows; bfloat16 experts run libtorch's
/// bfloat16 products, which round the rows to bfloat16 too.
/// </summary>
public static class ExpertPrecision
{
    public const string Auto = "auto";

    /// <summary>The dtype for a setting of "auto", "float32", "bfloat16" or "float16".</summary>
    /// <remarks>"auto" picks a 16-bit dtype only where it costs no weight precision: the checkpoint is stored in
    /// bfloat16 or float16. Then, on CPU with a float32 model, float32 experts for a bfloat16 checkpoint where
    /// <see cref="Bf16SwiGluKernel"/> runs (512-bit vectors, sizes that fit its tiles): it holds the weights as the
    /// bfloat16 they are stored in and multiplies float32 rows, faster than FBGEMM where a decode step streams the
    /// experts from memory. Else float16 where FBGEMM runs (float16 holds every bfloat16 weight of the magnitudes
    /// models have, 6e-5 to 65504, exactly, and the products stay float32 arithmetic, so this is the float32 model
    /// on its stored weights, measured 1.5 to 1.8x faster per decode step than bfloat16); else bfloat16 for a
    /// bfloat16 checkpoint on a device with native bfloat16 products (CUDA, or a CPU with AVX-512 BF16 or AMX), so
    /// the products round as the model was trained. Otherwise the experts run in <paramref name="computeDtype"/>,
    /// like the rest of the model.</remarks>
    /// <param name="cpuHasBfloat16">Whether the CPU has bfloat16 dot products (see <see cref="CpuHasBfloat16DotProducts"/>).</param>
    /// <param name="cpuHasFbgemm">Whether FBGEMM's float16 products run here (see <see cref="HalfPackedGemm.Available"/>).</param>
    /// <param name="cpuRunsManagedKernel">Whether <see cref="Bf16SwiGluKernel.Supported"/> holds here.</param>
    public static ScalarType Resolve(string setting, ModelConfig config, ScalarType computeDtype, Device device, bool cpuHasBfloat16, bool cpuHasFbgemm,
        bool cpuRunsManagedKernel = false) => setting switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" when device.type == DeviceType.CPU && !cpuHasFbgemm =>
            throw new ArgumentException("expert dtype 'float16' on CPU needs FBGEMM (an x86-64 libtorch on a CPU with AVX2)"),
        "float16" => ScalarType.Float16,
        Auto when device.type == DeviceType.CPU && cpuRunsManagedKernel && computeDtype == ScalarType.Float32 && config.TorchDtype == "bfloat16"
            && Bf16SwiGluKernel.Fits(config.HiddenSize, config.IntermediateSize) => ScalarType.Float32,
        Auto when device.type == DeviceType.CPU && cpuHasFbgemm && config.TorchDtype is "bfloat16" or "float16" => ScalarType.Float16,
        Auto => config.TorchDtype == "bfloat16" && (device.type == DeviceType.CUDA || cpuHasBfloat16) ? ScalarType.BFloat16 : computeDtype,
        _ => throw new ArgumentException($"expert dtype '{setting}' is not auto, float32, bfloat16 or float16"),
    };

    /// <summary><see cref="Resolve(string, ModelConfig, ScalarType, Device, bool, bool, bool)"/> with what this machine offers: its
    /// CPU's bfloat16 support and vector width, and FBGEMM (probed only for a CPU device).</summary>
    public static ScalarType Resolve(string setting, ModelConfig config, ScalarType computeDtype, Device device) =>
        Resolve(setting, config, computeDtype, device, CpuHasBfloat16DotProducts(), device.type == DeviceType.CPU && HalfPackedGemm.Available,
            Bf16SwiGluKernel.Supported);

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
