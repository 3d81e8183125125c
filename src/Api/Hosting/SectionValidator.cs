using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace MoeServe.Api.Hosting;

/// <summary>
/// Data-annotation validation whose failures name the full configuration key ("Engine:MaxBatchedTokens: ..."),
/// so a bad setting stops the server with one line an operator can act on.
/// </summary>
public sealed class SectionValidator<T>(string section) : IValidateOptions<T> where T : class
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        if (results.Count == 0) return ValidateOptionsResult.Success;
        return ValidateOptionsResult.Fail(results.Select(r =>
            $"{section}:{string.Join(",", r.MemberNames)}: {r.ErrorMessage}"));
    }
}
