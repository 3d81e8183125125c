using System.Diagnostics;
using System.Globalization;
using MoeServe.Inference.Checkpoint;
using MoeServe.Training.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Training.Train;

/// <summary>
/// The training loop: next-token cross-entropy plus aux coef * load-balancing loss, AdamW (decay on
/// matrices only), linear warm-up then cosine decay, gradient clipping, held-out evaluation and resumable
/// checkpoints, then the final Hugging Face folder.
/// </summary>
/// <remarks>
/// Determinism: the weights come from torch.manual_seed(seed) (initialisation is the only use of torch's
/// generator: no dropout, no router jitter), batches from a System.Random seeded by (seed, step). The CPU
/// kernels used are deterministic for a fixed thread count (index_add / index_select backward and
/// embedding backward accumulate in index order on CPU, unlike their CUDA atomics; the expert sort is a
/// stable counting sort; sorting router probabilities uses stable: true). TorchSharp 0.107 does not
/// implement torch.use_deterministic_algorithms, so this rests on the kernels used (the unit tests check
/// bit-identical weights). Reductions and matmuls split work by thread count, so bit-identical results
/// need the same --threads.
/// </remarks>
/// <param name="modelConfig">The model for a corpus; null: <see cref="MixtralConfigs.Default"/> with the corpus's vocabulary and special ids.</param>
public sealed class Trainer(TrainSettings settings, TextWriter output, Func<TrainingCorpus, ModelConfig>? modelConfig = null)
{
    private readonly ProgressLine _progress = new(output, inPlace: !Console.IsOutputRedirected && ReferenceEquals(output, Console.Out));
    private volatile bool _stopRequested;

    /// <summary>Asks the loop to stop after the current step, save its state and return (Ctrl-C).</summary>
    public void RequestStop() => _stopRequested = true;

    public bool StopRequested => _stopRequested;

    /// <returns>0 when the run is complete, 3 when it stopped early with its state saved (continue with --resume).</returns>
    public int Run(string command)
    {
        torch.set_num_threads(settings.Threads);

        var corpus = TrainingCorpus.Load(settings.DataDir, output.WriteLine);
        var config = modelConfig?.Invoke(corpus) ?? MixtralConfigs.Default(corpus.VocabSize, corpus.BosId, corpus.EosIds);
        if (settings.SeqLen > config.MaxPositionEmbeddings)
            throw new ArgumentException($"--seq-len {settings.SeqLen} exceeds max_position_embeddings {config.MaxPositionEmbeddings}");

        torch.manual_seed(settings.Seed);
        using var model = new MixtralForCausalLM(config, settings.ComputeScalarType);
        using var optimizer = CreateOptimizer(model, settings);
        var progress = new TrainProgress { Settings = settings, Command = command };
        if (settings.Resume)
        {
            var saved = TrainState.ReadProgress(settings.StateDir);
            TrainState.Restore(settings.StateDir, model, optimizer);
            progress = saved with { ResumedWith = [.. saved.ResumedWith, command], Settings = settings };
            output.WriteLine($"resume: continuing from step {saved.Step} of {settings.Steps} ({settings.StateDir})");
        }
        long parameters = model.ParameterCount();
        output.WriteLine($"model: {parameters:N0} parameters ({ActiveParameters(config, parameters):N0} active per token), " +
            $"{config.NumLayers} layers, hidden {config.HiddenSize}, {config.NumExperts} experts top-{config.ExpertsPerToken}, vocab {config.VocabSize}");
        output.WriteLine($"train: {settings.Steps} steps x {settings.BatchSize} x {settings.SeqLen} tokens, lr {settings.LearningRate:G3} " +
            $"(warm-up {settings.WarmupSteps}, cosine to {settings.LearningRate * settings.MinLrRatio:G3}), aux coef {settings.AuxLossCoef}, " +
            $"{settings.ComputeDtype} matmuls, {settings.Threads} threads, seed {settings.Seed}");

        var sampler = new BatchSampler(corpus.Domains.Select(d => d.Train).ToList(), settings.SeqLen, settings.BatchSize, settings.Seed);
        foreach (var skipped in Enumerable.Range(0, corpus.Domains.Count).Except(sampler.DrawnStreams))
            output.WriteLine($"warning: domain '{corpus.Domains[skipped].Name}' has too few training tokens for one window; it is not trained on");
        var evaluator = new HeldoutEvaluator(corpus.Domains, settings.SeqLen, settings.BatchSize, settings.EvalBatches);
        var schedule = new LearningRateSchedule(settings.LearningRate, settings.LearningRate * settings.MinLrRatio, settings.WarmupSteps, settings.Steps);
        var trainable = model.parameters().ToList();

        var session = Stopwatch.StartNew();
        int firstStep = progress.Step;
        double elapsedBefore = progress.ElapsedSeconds;
        var recent = new Queue<(double Loss, double Aux)>(); // the last 20 steps, for the status line
        var window = new List<(double Loss, double Aux)>();   // steps since the last LossRecord
        model.train();
        for (int step = progress.Step; step < settings.Steps; step++)
        {
            double lr = schedule.At(step);
            var (loss, aux) = TrainStep(model, optimizer, trainable, sampler, step, lr);
            int done = step + 1;
            progress = progress with
            {
                Step = done,
                TokensSeen = progress.TokensSeen + settings.TokensPerStep,
                ElapsedSeconds = elapsedBefore + session.Elapsed.TotalSeconds,
            };
            recent.Enqueue((loss, aux));
            if (recent.Count > 20) recent.Dequeue();
            window.Add((loss, aux));
            if (done % 50 == 0 || done == settings.Steps)
            {
                progress.Losses.Add(new LossRecord(done, window.Average(w => w.Loss), window.Average(w => w.Aux), lr));
                window.Clear();
            }
            double seconds = session.Elapsed.TotalSeconds;
            _progress.Update(string.Create(CultureInfo.InvariantCulture,
                $"step {done}/{settings.Steps} | loss {recent.Average(r => r.Loss):F3} | aux {recent.Average(r => r.Aux):F3} | lr {lr:0.00e+0} | " +
                $"{(done - firstStep) * settings.TokensPerStep / seconds:N0} tok/s | ETA {FormatDuration(TimeSpan.FromSeconds(seconds / (done - firstStep) * (settings.Steps - done)))}"),
                force: done == settings.Steps);

            if (done % settings.EvalEvery == 0 || done == settings.Steps)
            {
                var losses = evaluator.Evaluate(model);
                progress.Evals.Add(new EvalRecord(done, losses));
                _progress.WriteLine(FormatEval(done, losses));
            }
            bool stopping = done < settings.Steps && (_stopRequested || done == settings.StopAfter);
            if (done % settings.CheckpointEvery == 0 || done == settings.Steps || stopping)
                TrainState.Save(settings.StateDir, model, optimizer, progress);
            if (stopping)
            {
                _progress.Finish();
                output.WriteLine($"stopped after step {done} of {settings.Steps}; state saved in {settings.StateDir} (continue with --resume)");
                return 3;
            }
        }
        _progress.Finish();
        if (progress.Evals.Count == 0 || progress.Evals[^1].Step != progress.Step)
            progress.Evals.Add(new EvalRecord(progress.Step, evaluator.Evaluate(model)));

        HfExport.Write(settings.OutDir, model, corpus, progress, parameters, ActiveParameters(config, parameters));
        output.WriteLine($"done: {progress.Step} steps, {progress.TokensSeen:N0} tokens in {FormatDuration(TimeSpan.FromSeconds(progress.ElapsedSeconds))}; wrote {settings.OutDir}");
        return 0;
    }

    /// <summary>One optimizer step on step <paramref name="step"/>'s batch.</summary>
    /// <returns>The batch's mean cross-entropy (nats per token) and load-balancing loss, before the update.</returns>
    private (double Loss, double Aux) TrainStep(MixtralForCausalLM model, AdamW optimizer, IReadOnlyList<Parameter> trainable,
        BatchSampler sampler, int step, double lr)
    {
        using var scope = NewDisposeScope();
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
        int b = settings.BatchSize, l = settings.SeqLen;
        var (tokens, _) = sampler.Sample(step);
        var window = torch.tensor(tokens).view(b, l + 1);           // [B, L+1]
        var result = model.forward(window.narrow(1, 0, l));          // logits [B, L, V] fp32
        var targets = window.narrow(1, 1, l).reshape(-1);            // [B*L] next tokens
        var crossEntropy = F.cross_entropy(result.Logits.reshape(-1, result.Logits.shape[2]), targets);
        // The same mul then add as `ce + coef * aux`, with Scalars that outlive the calls (see MoeServe.Routing.Scalars).
        using var auxCoef = settings.AuxLossCoef.ToScalar();
        var loss = crossEntropy.add(result.AuxLoss.mul(auxCoef), MoeServe.Routing.Scalars.One);
        optimizer.zero_grad();
        loss.backward();
        nn.utils.clip_grad_norm_(trainable, settings.GradClip);
        optimizer.step();
        double lossValue = crossEntropy.item<float>(), auxValue = result.AuxLoss.item<float>();
        if (!double.IsFinite(lossValue)) throw new InvalidOperationException($"step {step + 1}: the loss is {lossValue}; lower --lr");
        return (lossValue, auxValue);
    }

    /// <summary>AdamW with decoupled weight decay on matrices and none on the RMSNorm scales.</summary>
    public static AdamW CreateOptimizer(MixtralForCausalLM model, TrainSettings settings)
    {
        var named = model.named_parameters().ToList();
        var decayed = named.Where(p => p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
        var plain = named.Where(p => p.parameter.dim() < 2).Select(p => p.parameter).ToList();
        var groups = new List<AdamW.ParamGroup>
        {
            new(decayed, settings.LearningRate, settings.Beta1, settings.Beta2, 1e-8, settings.WeightDecay, false, false),
            new(plain, settings.LearningRate, settings.Beta1, settings.Beta2, 1e-8, 0.0, false, false),
        };
        return new AdamW(groups, settings.LearningRate, settings.Beta1, settings.Beta2, 1e-8, settings.WeightDecay);
    }

    /// <summary>Parameters used per token: all but the (E - k) experts each layer leaves idle.</summary>
    public static long ActiveParameters(ModelConfig config, long total)
    {
        long expert = 3L * config.HiddenSize * config.IntermediateSize;
        return total - (long)config.NumLayers * (config.NumExperts - config.ExpertsPerToken) * expert;
    }

    private static string FormatEval(int step, IReadOnlyList<DomainLoss> losses)
    {
        var parts = losses.Select(l => string.Create(CultureInfo.InvariantCulture, $"{l.Domain} {l.Loss:F3} (ppl {l.Perplexity:F1})")).ToList();
        if (losses.Count > 1) parts.Add(string.Create(CultureInfo.InvariantCulture, $"mean {losses.Average(l => l.Loss):F3}"));
        return $"eval step {step}: " + string.Join(" | ", parts);
    }

    public static string FormatDuration(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:00}s" : $"{t.Seconds}s";
}
