using MoeServe.Inference.Engine;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Api.Hosting;

/// <summary>The loaded model as the endpoints see it.</summary>
public sealed record ServedModel(string Id, InferenceEngine Engine, ModelTokenizer Tokenizer, int MaxContextTokens, long CreatedUnix);

/// <summary>
/// Readiness of the served model: null until loading finishes. Endpoints answer 503 until it is set.
/// </summary>
public sealed class ModelState
{
    private volatile ServedModel? _model;

    public ServedModel? Model => _model;
    public string? LoadError { get; private set; }

    public void SetReady(ServedModel model) => _model = model;
    public void SetFailed(string error) => LoadError = error;

    /// <exception cref="MoeServe.Api.OpenAi.OpenAiException">503 while loading.</exception>
    public ServedModel Require() => _model ?? throw MoeServe.Api.OpenAi.OpenAiException.NotReady();

    /// <summary>The served model, when the request names it.</summary>
    /// <exception cref="MoeServe.Api.OpenAi.OpenAiException">503 while loading, 400 without a model, 404 for another model.</exception>
    public ServedModel Require(string? requestedModel)
    {
        var model = Require();
        if (string.IsNullOrEmpty(requestedModel)) throw MoeServe.Api.OpenAi.OpenAiException.Invalid("you must provide a model parameter", "model");
        if (requestedModel != model.Id) throw MoeServe.Api.OpenAi.OpenAiException.ModelNotFound(requestedModel);
        return model;
    }
}
