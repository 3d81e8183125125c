using System.ComponentModel.DataAnnotations;
using System.Reflection;
using Microsoft.Extensions.Options;

namespace MoeServe.Api.Hosting;

/// <summary>
/// Validation whose failures name the full configuration key ("Engine:MaxBatchedTokens: ..."), so a bad
/// setting stops the server with one line an operator can act on: unknown keys (typos) first, then the
/// data annotations and IValidatableObject rules of the options class.
/// </summary>
public sealed class SectionValidator<T>(IConfigurationSection section) : IValidateOptions<T> where T : class
{
    private static readonly HashSet<string> Known = typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.CanWrite).Select(p => p.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);

    public ValidateOptionsResult Validate(string? name, T options)
    {
        var unknown = section.GetChildren().Select(c => c.Key).Where(k => !Known.Contains(k)).ToList();
        if (unknown.Count > 0)
            return ValidateOptionsResult.Fail(unknown.Select(k =>
                $"{section.Path}:{k} is not a known setting (known: {string.Join(", ", Known.Order())})"));
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        if (results.Count == 0) return ValidateOptionsResult.Success;
        return ValidateOptionsResult.Fail(results.Select(r =>
        {
            // Nested settings report "Key: message" with the key already in the member name; keep one copy.
            string key = string.Join(",", r.MemberNames), message = r.ErrorMessage ?? "invalid";
            int colon = message.IndexOf(": ", StringComparison.Ordinal);
            if (colon > 0 && key.EndsWith(message[..colon], StringComparison.Ordinal)) message = message[(colon + 2)..];
            return $"{section.Path}:{key}: {message}";
        }));
    }
}
