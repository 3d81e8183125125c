using System.CommandLine;
using MoeServe.Inference.Checkpoint;

namespace MoeServe.Training.Train;

/// <summary>
/// `moeserve-train train`: trains the default Mixtral-architecture MoE model on the data folder and writes a
/// Hugging Face checkpoint folder. The defaults (2600 steps of 16 x 256 tokens, 10.6M tokens) take about
/// 55 minutes on an idle 2-core AVX-512 CPU (about 3,400 tokens/s with bf16 matmuls on 2 threads).
/// </summary>
public static class TrainCommand
{
    public const string DefaultData = "data";
    public const string DefaultOut = "models/moeserve-moe-tiny";
    public const int DefaultSteps = 2600;
    public const int DefaultBatchSize = 16;
    public const int DefaultSeqLen = 256;
    public const double DefaultLearningRate = 2e-3;

    public static Command Create()
    {
        var data = new Option<string?>("--data") { Description = $"Data folder (default: {DefaultData} under the repository root)" };
        var outDir = new Option<string?>("--out") { Description = $"Output model folder (default: {DefaultOut} under the repository root)" };
        var seed = new Option<long>("--seed") { Description = "Seed of the weights and of the batch sampler", DefaultValueFactory = _ => 1234 };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => DefaultSteps };
        var batch = new Option<int>("--batch-size") { Description = "Sequences per step", DefaultValueFactory = _ => DefaultBatchSize };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence", DefaultValueFactory = _ => DefaultSeqLen };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => DefaultLearningRate };
        var warmup = new Option<int?>("--warmup-steps") { Description = "Linear warm-up steps (default: 5% of --steps, at most 200)" };
        var aux = new Option<double>("--aux-loss-coef") { Description = "Weight of the load-balancing loss (1.0 = uniform routing)", DefaultValueFactory = _ => 0.01 };
        var dtype = new Option<string>("--dtype") { Description = "Matmul dtype: bfloat16 (float32 master weights; about 1.3x faster end to end on CPU) or float32", DefaultValueFactory = _ => "bfloat16" };
        var threads = new Option<int>("--threads") { Description = "libtorch threads (bit-identical results need the same count)", DefaultValueFactory = _ => 2 };
        var resume = new Option<bool>("--resume") { Description = "Continue the run saved in <out>/.train-state" };
        var evalEvery = new Option<int>("--eval-every") { Description = "Held-out loss per domain every K steps", DefaultValueFactory = _ => 250 };
        var evalBatches = new Option<int>("--eval-batches") { Description = "Held-out batches per domain per evaluation", DefaultValueFactory = _ => 2 };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Save the resumable state every N steps", DefaultValueFactory = _ => 250 };
        var stopAfter = new Option<int?>("--stop-after") { Description = "Stop after this many steps (state saved); continue later with --resume. Ctrl-C does the same after the current step" };

        var command = new Command("train", "Train the MoE model on the data folder and write a Hugging Face checkpoint")
        {
            data, outDir, seed, steps, batch, seqLen, lr, warmup, aux, dtype, threads, resume, evalEvery, evalBatches, checkpointEvery, stopAfter,
        };
        command.SetAction(result =>
        {
            TrainSettings settings;
            try
            {
                int stepCount = Positive(result.GetValue(steps), "--steps");
                settings = new TrainSettings
                {
                    DataDir = Path.GetFullPath(result.GetValue(data) ?? RepositoryPath(DefaultData)),
                    OutDir = Path.GetFullPath(result.GetValue(outDir) ?? RepositoryPath(DefaultOut)),
                    Seed = result.GetValue(seed),
                    Steps = stepCount,
                    BatchSize = Positive(result.GetValue(batch), "--batch-size"),
                    SeqLen = Positive(result.GetValue(seqLen), "--seq-len"),
                    LearningRate = result.GetValue(lr) is > 0 and < 1 and var l ? l : throw new ArgumentException("--lr must be in (0, 1)"),
                    WarmupSteps = result.GetValue(warmup) is int w ? Positive(w, "--warmup-steps") : Math.Clamp(stepCount / 20, 1, 200),
                    AuxLossCoef = result.GetValue(aux) is >= 0 and var a ? a : throw new ArgumentException("--aux-loss-coef must be >= 0"),
                    ComputeDtype = TrainSettings.ParseDtype(result.GetValue(dtype)!) == TorchSharp.torch.ScalarType.BFloat16 ? "bfloat16" : "float32",
                    Threads = Positive(result.GetValue(threads), "--threads"),
                    Resume = result.GetValue(resume),
                    EvalEvery = Positive(result.GetValue(evalEvery), "--eval-every"),
                    EvalBatches = Positive(result.GetValue(evalBatches), "--eval-batches"),
                    CheckpointEvery = Positive(result.GetValue(checkpointEvery), "--checkpoint-every"),
                    StopAfter = result.GetValue(stopAfter) is int stop ? Positive(stop, "--stop-after") : null,
                };
                if (settings.Resume)
                {
                    var explicitOptions = new Option[] { seed, steps, batch, seqLen, lr, warmup, aux, dtype }
                        .Where(o => result.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToHashSet();
                    settings = ResumeSettings(settings, explicitOptions);
                }
                else if (TrainState.Exists(settings.StateDir))
                    throw new ArgumentException($"{settings.StateDir} holds a previous run: pass --resume to continue it, or delete it to start over");
            }
            catch (Exception e) when (e is ArgumentException or DirectoryNotFoundException or InvalidDataException)
            {
                Console.Error.WriteLine($"train: {e.Message}");
                return 2;
            }
            var trainer = new Trainer(settings, Console.Out);
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                // First Ctrl-C: finish the step, save, exit. A second one kills the process as usual.
                if (trainer.StopRequested) return;
                e.Cancel = true;
                trainer.RequestStop();
                Console.Error.WriteLine("\ntrain: stopping after this step (Ctrl-C again to abort without saving)");
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                return trainer.Run(CommandLine());
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or CheckpointException or IOException or InvalidOperationException)
            {
                Console.Out.WriteLine();
                Console.Error.WriteLine($"train: {e.Message}");
                return 1;
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
        });
        return command;
    }

    /// <summary>
    /// On --resume the run's trajectory (seed, steps, batch, lengths, learning rate, aux coef) comes from the
    /// saved state; an explicitly given option that contradicts it is an error. Paths, threads and the
    /// evaluation and checkpoint intervals may change.
    /// </summary>
    private static TrainSettings ResumeSettings(TrainSettings requested, IReadOnlySet<string> explicitOptions)
    {
        if (!TrainState.Exists(requested.StateDir))
            throw new ArgumentException($"--resume: no saved run in {requested.StateDir}");
        var saved = TrainState.ReadProgress(requested.StateDir).Settings;
        var savedFields = saved.TrajectoryFields().ToDictionary(f => f.Option, f => f.Value);
        foreach (var (option, value) in requested.TrajectoryFields())
            if (explicitOptions.Contains(option) && savedFields[option] != value)
                throw new ArgumentException($"--resume: {option} {value} differs from the saved run's {savedFields[option]}; drop the option or start a new run");
        return saved with
        {
            DataDir = requested.DataDir, OutDir = requested.OutDir, Threads = requested.Threads, Resume = true,
            EvalEvery = requested.EvalEvery, EvalBatches = requested.EvalBatches, CheckpointEvery = requested.CheckpointEvery,
            StopAfter = requested.StopAfter,
        };
    }

    private static string CommandLine() =>
        "moeserve-train " + string.Join(" ", Environment.GetCommandLineArgs().Skip(1).Select(a => a.Contains(' ') ? $"\"{a}\"" : a));

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option} must be positive (got {value})");

    /// <summary>A repository-relative default path: the nearest folder with MoeServe.sln above the working directory, else above the executable.</summary>
    private static string RepositoryPath(string relative)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "MoeServe.sln"))) return Path.Combine(dir.FullName, relative);
        throw new DirectoryNotFoundException($"MoeServe.sln not found above {Directory.GetCurrentDirectory()}; pass an explicit path");
    }
}
