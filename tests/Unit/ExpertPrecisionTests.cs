using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>Model:ExpertDtype: what "auto" picks, and how the CPU's bfloat16 support is read.</summary>
public class ExpertPrecisionTests
{
    private static ModelConfig Stored(string? dtype) =>
        ModelConfig.Load(RepositoryPaths.Fixture("mixtral-tiny-bf16-sharded")) with { TorchDtype = dtype };

    [Theory]
    // auto on CPU: float16 (FBGEMM) for a 16-bit checkpoint where FBGEMM runs, else bfloat16 for a BF16 checkpoint
    // with native bfloat16 products, else the compute dtype.
    [InlineData("auto", "bfloat16", true, true, ScalarType.Float32, ScalarType.Float16)]
    [InlineData("auto", "float16", false, true, ScalarType.Float32, ScalarType.Float16)]
    [InlineData("auto", "bfloat16", true, false, ScalarType.Float32, ScalarType.BFloat16)]
    [InlineData("auto", "bfloat16", false, false, ScalarType.Float32, ScalarType.Float32)]
    [InlineData("auto", "float16", true, false, ScalarType.Float32, ScalarType.Float32)]
    [InlineData("auto", "float32", true, true, ScalarType.Float32, ScalarType.Float32)]
    [InlineData("auto", null, true, true, ScalarType.Float32, ScalarType.Float32)]
    [InlineData("auto", "float32", true, true, ScalarType.BFloat16, ScalarType.BFloat16)]
    // Explicit settings win over the checkpoint and the CPU.
    [InlineData("float32", "bfloat16", true, true, ScalarType.Float32, ScalarType.Float32)]
    [InlineData("bfloat16", "float32", false, true, ScalarType.Float32, ScalarType.BFloat16)]
    [InlineData("float16", "float32", false, true, ScalarType.Float32, ScalarType.Float16)]
    public void Resolve_picks_the_expert_dtype(string setting, string? stored, bool cpuHasBfloat16, bool cpuHasFbgemm, ScalarType compute, ScalarType expected) =>
        Assert.Equal(expected, ExpertPrecision.Resolve(setting, Stored(stored), compute, CPU, cpuHasBfloat16, cpuHasFbgemm));

    [Theory]
    // auto on a CPU that runs the managed kernel: float32 experts (the kernel, on the stored bfloat16 values) for a
    // bfloat16 checkpoint in a float32 model; a float16 checkpoint keeps FBGEMM, whose float16 holds its weights.
    [InlineData("auto", "bfloat16", ScalarType.Float32, ScalarType.Float32)]
    [InlineData("auto", "float16", ScalarType.Float32, ScalarType.Float16)]
    [InlineData("auto", "bfloat16", ScalarType.BFloat16, ScalarType.Float16)]
    [InlineData("float16", "bfloat16", ScalarType.Float32, ScalarType.Float16)]
    public void Resolve_picks_float32_experts_where_the_managed_kernel_runs(string setting, string? stored, ScalarType compute, ScalarType expected) =>
        Assert.Equal(expected, ExpertPrecision.Resolve(setting, Stored(stored), compute, CPU, cpuHasBfloat16: true, cpuHasFbgemm: true, cpuRunsManagedKernel: true));

    [Fact]
    public void Auto_keeps_fbgemm_where_the_model_does_not_fit_the_managed_kernel() =>
        Assert.Equal(ScalarType.Float16, ExpertPrecision.Resolve("auto", Stored("bfloat16") with { HiddenSize = 96 }, ScalarType.Float32, CPU, true, true, true));

    [Fact]
    public void Auto_on_cuda_keeps_bfloat16_for_a_bfloat16_checkpoint() =>
        Assert.Equal(ScalarType.BFloat16, ExpertPrecision.Resolve("auto", Stored("bfloat16"), ScalarType.Float32, new Device(DeviceType.CUDA, 0), false, true));

    [Fact]
    public void Resolve_refuses_an_unknown_setting() =>
        Assert.Contains("float64", Assert.Throws<ArgumentException>(() =>
            ExpertPrecision.Resolve("float64", Stored("bfloat16"), ScalarType.Float32, CPU, true, true)).Message);

    [Fact]
    public void Float16_on_a_cpu_without_fbgemm_is_refused() =>
        Assert.Contains("FBGEMM", Assert.Throws<ArgumentException>(() =>
            ExpertPrecision.Resolve("float16", Stored("bfloat16"), ScalarType.Float32, CPU, true, false)).Message);

    [Fact]
    public void Fbgemm_runs_on_this_x86_64_build() =>
        Assert.True(HalfPackedGemm.Available, "libtorch-cpu-linux-x64 has FBGEMM and every x86-64 CPU these tests run on has AVX2");

    [Theory]
    [InlineData("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n", true)]
    [InlineData("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", true)]
    [InlineData("flags\t\t: fpu avx2 avx512f avx512_vnni\n", false)]
    [InlineData("processor\t: 0\n", false)]
    public void Cpu_bfloat16_support_is_read_from_the_flags_line(string cpuinfo, bool expected)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "processor\t: 0\nvendor_id\t: AuthenticAMD\n" + cpuinfo);
            Assert.Equal(expected, ExpertPrecision.CpuHasBfloat16DotProducts(path));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void A_missing_cpuinfo_means_no_bfloat16() =>
        Assert.False(ExpertPrecision.CpuHasBfloat16DotProducts("/nonexistent/cpuinfo"));
}
