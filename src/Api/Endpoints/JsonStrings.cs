using System.Text.Json;
using MoeServe.Api.OpenAi;

namespace MoeServe.Api.Endpoints;

/// <summary>
/// Reads a string out of a JSON element the client sent. System.Text.Json checks UTF-8 lazily, so invalid
/// bytes inside a string surface only here, as InvalidOperationException: they are the client's error (400).
/// </summary>
public static class JsonStrings
{
    public static string Text(JsonElement element, string param)
    {
        try
        {
            return element.GetString() ?? throw OpenAiException.Invalid($"{param} must be a string", param);
        }
        catch (InvalidOperationException)
        {
            throw OpenAiException.Invalid($"{param} is not valid UTF-8 text", param);
        }
    }
}
