using MoeServe.Inference.Engine;
using Prometheus;

namespace MoeServe.Api.Metrics;

/// <summary>
/// The Prometheus metrics of the API contract. They observe the engine and the endpoints; nothing reads
/// them back to make a decision. Label sets stay bounded (policy, layer x expert).
/// </summary>
public sealed class MoeServeMetrics : IEngineObserver
{
    private static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.001, 2, 18); // 1 ms .. ~131 s

    private readonly Histogram _requestLatency = Prometheus.Metrics.CreateHistogram("moeserve_request_latency_seconds",
        "End-to-end latency of completed requests.", new HistogramConfiguration { LabelNames = ["policy"], Buckets = LatencyBuckets });
    private readonly Histogram _ttft = Prometheus.Metrics.CreateHistogram("moeserve_time_to_first_token_seconds",
        "Time from arrival to the first generated token.", new HistogramConfiguration { LabelNames = ["policy"], Buckets = LatencyBuckets });
    private readonly Histogram _interToken = Prometheus.Metrics.CreateHistogram("moeserve_inter_token_latency_seconds",
        "Time between consecutive generated tokens of a sequence.", new HistogramConfiguration { Buckets = LatencyBuckets });
    private readonly Histogram _queue = Prometheus.Metrics.CreateHistogram("moeserve_request_queue_seconds",
        "Time a sequence waited before its first step.", new HistogramConfiguration { Buckets = LatencyBuckets });
    private readonly Gauge _running = Prometheus.Metrics.CreateGauge("moeserve_requests_running", "Sequences in the engine's running batch.");
    private readonly Gauge _waiting = Prometheus.Metrics.CreateGauge("moeserve_requests_waiting", "Sequences waiting for a slot.");
    private readonly Counter _promptTokens = Prometheus.Metrics.CreateCounter("moeserve_prompt_tokens_total", "Prompt tokens processed.");
    private readonly Counter _generationTokens = Prometheus.Metrics.CreateCounter("moeserve_generation_tokens_total", "Tokens generated.");
    private readonly Counter _expertTokens = Prometheus.Metrics.CreateCounter("moeserve_expert_tokens_total",
        "Token-expert pairs executed.", new CounterConfiguration { LabelNames = ["layer", "expert"] });
    private readonly Histogram _batchTokens = Prometheus.Metrics.CreateHistogram("moeserve_batch_tokens",
        "Tokens in an engine step's flat batch.", new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 14) });
    private readonly Histogram _batchSequences = Prometheus.Metrics.CreateHistogram("moeserve_batch_sequences",
        "Sequences in an engine step.", new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 12) });
    private readonly Histogram _stepSeconds = Prometheus.Metrics.CreateHistogram("moeserve_step_seconds",
        "Wall time of one engine step's forward pass.", new HistogramConfiguration { Buckets = LatencyBuckets });
    private readonly Counter _requests = Prometheus.Metrics.CreateCounter("moeserve_requests_total",
        "Finished sequences by finish reason.", new CounterConfiguration { LabelNames = ["finish_reason"] });

    private readonly Gauge _kvUsage = Prometheus.Metrics.CreateGauge("moeserve_kv_cache_usage_ratio", "Share of key/value cache blocks in use.");
    private readonly Counter _preemptions = Prometheus.Metrics.CreateCounter("moeserve_preemptions_total", "Sequences preempted (evicted from the cache and recomputed).");
    private long _preemptionsSeen;

    private readonly Counter _expertDropped = Prometheus.Metrics.CreateCounter("moeserve_expert_dropped_total",
        "Token-expert pairs dropped by capacity at an expert.", new CounterConfiguration { LabelNames = ["layer", "expert", "policy"] });
    private readonly Counter _expertRerouted = Prometheus.Metrics.CreateCounter("moeserve_expert_rerouted_total",
        "Token-expert pairs routed to an expert outside the token's vanilla top-k.", new CounterConfiguration { LabelNames = ["layer", "expert", "policy"] });
    private readonly Gauge _layerImbalance = Prometheus.Metrics.CreateGauge("moeserve_layer_imbalance",
        "max/mean expert load of a layer over the recent window of engine steps.", new GaugeConfiguration { LabelNames = ["layer"] });
    private readonly Counter _deviceTokens = Prometheus.Metrics.CreateCounter("moeserve_device_tokens_total",
        "Token-expert pairs executed on each expert-parallel device, summed over layers.", new CounterConfiguration { LabelNames = ["device"] });
    private readonly Counter _deviceBusy = Prometheus.Metrics.CreateCounter("moeserve_device_busy_seconds_total",
        "Wall seconds each expert-parallel device spent on its experts (copy in, experts, copy back), summed over layers.", new CounterConfiguration { LabelNames = ["device"] });
    private readonly Gauge _stragglerRatio = Prometheus.Metrics.CreateGauge("moeserve_layer_straggler_ratio",
        "Busiest device's pairs over the mean device's, summed over the recent window of engine steps (1.0: balanced devices).", new GaugeConfiguration { LabelNames = ["layer"] });
    private readonly LoadWindow _loadWindow;
    private string[] _deviceNames = [];

    /// <summary>Names of the expert-parallel devices in the device label (cuda:N, or cpu:N for virtual ranks).</summary>
    public void SetDevices(IReadOnlyList<string> names) => _deviceNames = names.ToArray();

    public MoeServeMetrics(LoadWindow loadWindow) => _loadWindow = loadWindow;

    private static void CountByPolicy(Counter counter, int layer, Dictionary<MoeServe.Routing.RoutingPolicy, long[]> byPolicy)
    {
        foreach (var (policy, counts) in byPolicy)
            for (int expert = 0; expert < counts.Length; expert++)
                if (counts[expert] > 0)
                    counter.WithLabels(layer.ToString(), expert.ToString(), MoeServe.Routing.RoutingPolicyNames.ToWireName(policy)).Inc(counts[expert]);
    }

    public void ObserveRequest(string policy, double seconds) => _requestLatency.WithLabels(policy).Observe(seconds);

    public void OnStep(StepStats step)
    {
        _running.Set(step.Running);
        _waiting.Set(step.Waiting);
        _batchTokens.Observe(step.Tokens);
        _batchSequences.Observe(step.Sequences);
        _stepSeconds.Observe(step.Seconds);
        _kvUsage.Set(step.KvCacheUsage);
        _preemptions.Inc(step.Preemptions - _preemptionsSeen); // the engine reports a running total, one step at a time
        _preemptionsSeen = step.Preemptions;
        var loads = step.Routing.ExpertLoads;
        for (int layer = 0; layer < loads.Length; layer++)
        {
            for (int expert = 0; expert < loads[layer].Length; expert++)
                if (loads[layer][expert] > 0)
                    _expertTokens.WithLabels(layer.ToString(), expert.ToString()).Inc(loads[layer][expert]);
            CountByPolicy(_expertDropped, layer, step.Routing.Dropped[layer]);
            CountByPolicy(_expertRerouted, layer, step.Routing.Rerouted[layer]);
        }
        for (int d = 0; d < step.Routing.Devices; d++)
        {
            string device = d < _deviceNames.Length ? _deviceNames[d] : $"cpu:{d}";
            _deviceTokens.WithLabels(device).Inc(step.Routing.DevicePairs.Sum(layer => layer[d]));
            _deviceBusy.WithLabels(device).Inc(step.Routing.DeviceSeconds.Sum(layer => layer[d]));
        }
        _loadWindow.Add(step.Routing);
        for (int layer = 0; layer < loads.Length; layer++)
        {
            _layerImbalance.WithLabels(layer.ToString()).Set(_loadWindow.Imbalance(layer));
            _stragglerRatio.WithLabels(layer.ToString()).Set(_loadWindow.StragglerRatio(layer));
        }
    }

    public void OnFirstToken(string policy, double secondsSinceQueued) => _ttft.WithLabels(policy).Observe(secondsSinceQueued);

    public void OnNextToken(double secondsSincePrevious) => _interToken.Observe(secondsSincePrevious);

    public void OnSequenceFinished(SequenceStats stats)
    {
        _promptTokens.Inc(stats.PromptTokens);
        _generationTokens.Inc(stats.CompletionTokens);
        _queue.Observe(stats.QueueSeconds);
        _requests.WithLabels(stats.FinishReason).Inc();
    }

    /// <summary>Gauges follow admissions and finishes too (an idle engine runs no steps).</summary>
    public void OnQueueChanged(int running, int waiting)
    {
        _running.Set(running);
        _waiting.Set(waiting);
    }
}
