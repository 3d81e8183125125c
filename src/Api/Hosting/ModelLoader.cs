using Microsoft.Extensions.Options;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Model;
using MoeServe.Inference.Tokenization;
using TorchSharp;

namespace MoeServe.Api.Hosting;

/// <summary>
/// Loads the checkpoint in the background so that /health can answer 503 meanwhile, then starts the
/// engine. A checkpoint that cannot be served stops the process with one line naming the file and tensor.
/// </summary>
public sealed class ModelLoader(
    IOptions<ModelOptions> modelOptions,
    IOptions<EngineOptions> engineOptions,
    IOptions<RoutingOptions> routingOptions,
    IOptions<ExpertParallelOptions> expertParallelOptions,
    ModelState state,
    IEngineObserver observer,
    Metrics.MoeServeMetrics metrics,
    IHostEnvironment environment,
    IHostApplicationLifetime lifetime,
    ILogger<ModelLoader> logger,
    ILogger<InferenceEngine> engineLogger) : BackgroundService
{
    private InferenceEngine? _engine;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        var options = modelOptions.Value;
        string dir = Path.GetFullPath(Path.Combine(environment.ContentRootPath, options.Path));
        try
        {
            var dtype = ModelOptions.ScalarTypeOf(options.ComputeDtype);
            var device = DeviceSelection.Resolve(options.Device);
            var expertDtype = ExpertPrecision.Resolve(options.ExpertDtype, ModelConfig.Load(dir), dtype, device);
            var started = DateTime.UtcNow;
            var expertParallel = expertParallelOptions.Value;
            var model = MoeForCausalLM.Load(dir, dtype, device, config => (expertParallel.ToPlan(config, environment.ContentRootPath)
                ?? Inference.Parallel.ExpertParallelPlan.Single(device, config.NumLayers, config.NumExperts)) with { ThreadsPerDevice = expertParallel.ThreadsPerDevice },
                expertDtype, options.BatchInvariant);
            var tokenizer = ModelTokenizer.Load(dir, model.Config);
            _engine = new InferenceEngine(model, tokenizer, engineOptions.Value, observer, options.MaxModelLen, engineLogger, routingOptions.Value.ToConfig());
            int context = _engine.MaxContextTokens;
            string id = options.ServedModelName ?? Path.GetFileName(dir.TrimEnd(Path.DirectorySeparatorChar));
            state.SetReady(new ServedModel(id, _engine, tokenizer, context, DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
            var plan = model.ExpertParallel;
            metrics.SetDevices(plan.Names);
            logger.LogInformation("Serving {Model} ({Type}, {Layers} layers, {Experts} experts, top-{K}) from {Dir} on {Device} in {Dtype} (experts in {ExpertDtype}, batch-invariant {BatchInvariant}); experts on {Devices} ({Placement} placement, {Redundant} redundant, {Execution}, {Threads} thread(s) per device); {Loops} engine loop(s) of {StepThreads} step thread(s); chat template {Template}; loaded in {Seconds:F1}s",
                id, model.Config.ModelType, model.Config.NumLayers, model.Config.NumExperts, model.Config.ExpertsPerToken, dir, device, dtype, expertDtype, options.BatchInvariant,
                string.Join(", ", plan.Names), plan.Placement.Mode, plan.Placement.RedundantExperts, plan.Concurrent ? "concurrent" : "in turn", plan.ThreadsPerDevice, engineOptions.Value.Loops, engineOptions.Value.StepThreads,
                tokenizer.ChatTemplate.Name, (DateTime.UtcNow - started).TotalSeconds);
        }
        catch (Exception e) when (e is CheckpointException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            string line = $"cannot serve model (Model:Path = {dir}): {e.Message}";
            state.SetFailed(line);
            Console.Error.WriteLine(line);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
        }
    }, stoppingToken);

    public override void Dispose()
    {
        _engine?.Dispose();
        base.Dispose();
    }
}
