using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>A bad setting stops the server at start with one line on stderr that names the key.</summary>
public sealed class BadConfigurationTests
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("--Engine:MaxRunningSequences=0", "Engine:MaxRunningSequences")]
    [InlineData("--Engine:MaxBatchedTokens=1", "Engine:MaxBatchedTokens")]
    [InlineData("--Engine:Loops=0", "Engine:Loops")]
    [InlineData("--Engine:MaxRunningSequences=1", "Engine:MaxRunningSequences")] // fewer running slots than the default 2 loops
    [InlineData("--Engine:KvCacheTokens=4000 --Engine:Loops=4", "Engine:Loops")]  // enough for one loop; 1000 tokens a loop is less than one 1024-token context
    [InlineData("--Model:ComputeDtype=float64", "Model:ComputeDtype")]
    [InlineData("--Model:ExpertDtype=float64", "Model:ExpertDtype")]
    [InlineData("--Model:BatchInvariant=sometimes", "Model:BatchInvariant")]
    [InlineData("--Model:Device=tpu", "Model:Device")]
    [InlineData("--Routing:Policy=nonsense", "Routing:Policy")]
    [InlineData("--Routing:CapacityFactor=-1", "Routing:CapacityFactor")]
    [InlineData("--Routing:Strategy=loudest", "Routing:Strategy")]
    [InlineData("--Server:MaxRequestBodyBytes=10", "Server:MaxRequestBodyBytes")]
    [InlineData("--Model:Path=/nonexistent", "/nonexistent/config.json")]
    public Task Bad_setting_stops_the_server_with_one_line_naming_it(string arguments, string named) =>
        AssertStopsWithOneLineNaming(named, arguments.Split(' '));

    /// <summary>
    /// Expert parallelism: caught either by validation at start or when the plan meets the checkpoint (the
    /// 8-expert test model), each with the key an operator has to change. Arguments are space-separated.
    /// </summary>
    [Theory]
    [InlineData("--ExpertParallel:Placement=bogus", "ExpertParallel:Placement")]
    // The tests run the CPU build of libtorch (no CUDA): one listed device must fail as clearly as several.
    [InlineData("--ExpertParallel:Devices:0=cuda:0", "ExpertParallel:Devices")]
    [InlineData("--ExpertParallel:Devices:0=cuda:0 --ExpertParallel:Devices:1=cuda:1", "ExpertParallel:Devices")]
    [InlineData("--ExpertParallel:Devices:0=gpu0", "ExpertParallel:Devices:0")]
    [InlineData("--ExpertParallel:VirtualDevices=9", "ExpertParallel:VirtualDevices")]
    [InlineData("--ExpertParallel:VirtualDevices=0", "ExpertParallel:VirtualDevices")]
    [InlineData("--ExpertParallel:VirtualDevices=2 --ExpertParallel:Placement=explicit --ExpertParallel:ExpertMap:0=0 --ExpertParallel:ExpertMap:1=1 --ExpertParallel:ExpertMap:2=1",
        "ExpertParallel:ExpertMap")]
    [InlineData("--ExpertParallel:VirtualDevices=2 --ExpertParallel:Placement=explicit", "ExpertParallel:ExpertMap")]
    [InlineData("--ExpertParallel:VirtualDevices=4 --ExpertParallel:Placement=load_aware --ExpertParallel:LoadProfile=/nonexistent/load.json",
        "ExpertParallel:LoadProfile")]
    [InlineData("--ExpertParallel:VirtualDevices=4 --ExpertParallel:Placement=load_aware", "ExpertParallel:LoadProfile")]
    [InlineData("--ExpertParallel:VirtualDevices=4 --ExpertParallel:RedundantExperts=2", "ExpertParallel:RedundantExperts")]
    [InlineData("--ExpertParallel:VirtualDevices=2 --ExpertParallel:Placement=load_aware --ExpertParallel:LoadProfile=/nonexistent/load.json --ExpertParallel:RedundantExperts=9",
        "ExpertParallel:RedundantExperts")]
    public Task Bad_expert_parallel_setting_stops_the_server_with_one_line_naming_it(string arguments, string named) =>
        AssertStopsWithOneLineNaming(named, arguments.Split(' '));

    private static async Task AssertStopsWithOneLineNaming(string named, params string[] arguments)
    {
        string argument = string.Join(" ", arguments);
        var result = await ServerProcess.RunToExitAsync(ExitTimeout, arguments);
        Assert.True(result.Exited, $"{argument}: the server was still running after {ExitTimeout.TotalSeconds}s\n{result}");
        Assert.True(result.ExitCode != 0, $"{argument}: exit code 0\n{result}");

        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"{argument}: expected one line on stderr, got {lines.Length}\n{result}");
        Assert.Contains(named, lines[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Theory]
    [InlineData("--Engine:MaxRuningSequences=8", "Engine:MaxRuningSequences")]
    [InlineData("--ExpertParallel:Devicez=1", "ExpertParallel:Devicez")]
    public async Task Unknown_setting_in_a_section_stops_the_server_naming_it(string argument, string named)
    {
        var result = await ServerProcess.RunToExitAsync(ExitTimeout, argument);
        Assert.True(result.Exited && result.ExitCode != 0, result.ToString());
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var line = Assert.Single(lines);
        Assert.Contains(named, line);
        Assert.Contains("is not a known setting", line);
    }
}
