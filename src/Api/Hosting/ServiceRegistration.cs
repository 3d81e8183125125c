using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using MoeServe.Api.Endpoints;
using MoeServe.Api.Metrics;
using MoeServe.Api.OpenApi;
using MoeServe.Inference.Engine;
using Prometheus;

namespace MoeServe.Api.Hosting;

/// <summary>The only place (with Program.cs) that reads configuration: binds and validates every option at start.</summary>
public static class ServiceRegistration
{
    public static WebApplicationBuilder AddMoeServe(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        AddValidatedOptions<ModelOptions>(builder, ModelOptions.Section);
        AddValidatedOptions<EngineOptions>(builder, EngineOptions.Section);
        AddValidatedOptions<RoutingOptions>(builder, RoutingOptions.Section);
        AddValidatedOptions<ExpertParallelOptions>(builder, ExpertParallelOptions.Section);
        AddValidatedOptions<ServerOptions>(builder, ServerOptions.Section);
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<ServerOptions>>((kestrel, server) =>
            kestrel.Limits.MaxRequestBodySize = server.Value.MaxRequestBodyBytes);

        services.ConfigureHttpJsonOptions(o => Json.Configure(o.SerializerOptions));
        services.AddSingleton<ModelState>();
        services.AddSingleton<LoadWindow>();
        services.AddSingleton<MoeServeMetrics>();
        services.AddSingleton<IEngineObserver>(sp => sp.GetRequiredService<MoeServeMetrics>());
        services.AddHostedService<ModelLoader>();

        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new Microsoft.OpenApi.OpenApiInfo
            {
                Title = "MoeServe",
                Version = "v1",
                Description = "OpenAI-compatible serving of Mixture-of-Experts models with capacity-aware routing policies.",
            });
            c.OperationFilter<GenerationOperationFilter>();
            string xml = Path.Combine(AppContext.BaseDirectory, "MoeServe.Api.xml");
            if (File.Exists(xml)) c.IncludeXmlComments(xml);
        });
        return builder;
    }

    private static void AddValidatedOptions<T>(WebApplicationBuilder builder, string section) where T : class
    {
        var configuration = builder.Configuration.GetSection(section);
        builder.Services.AddOptions<T>().Bind(configuration).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<T>>(new SectionValidator<T>(configuration));
        builder.Services.AddSingleton(new SectionCheck(services => _ = services.GetRequiredService<IOptions<T>>().Value));
    }

    /// <summary>Reads one registered section's options, which validates them.</summary>
    private sealed record SectionCheck(Action<IServiceProvider> Run);

    /// <summary>
    /// Validates every section now, before the host starts: a bad value then surfaces as the caller's one-line
    /// OptionsValidationException, not first as the host's "Hosting failed to start" log with a stack trace.
    /// </summary>
    public static void ValidateConfiguration(this WebApplication app)
    {
        // In registration order, so the first bad section is the one reported, as before.
        foreach (var check in app.Services.GetServices<SectionCheck>()) check.Run(app.Services);
    }

    public static WebApplication UseMoeServe(this WebApplication app)
    {
        app.UseMiddleware<ErrorHandlingMiddleware>();
        app.UseSwagger();
        app.UseSwaggerUI(c => c.DocumentTitle = "MoeServe API");
        app.UseMiddleware<ApiKeyMiddleware>();
        app.UseHttpMetrics();
        app.MapOpenAiApi();
        app.MapMetrics("/metrics");
        app.MapFallback(() => new MoeServe.Api.OpenAi.OpenAiException(StatusCodes.Status404NotFound, "Unknown route.", "invalid_request_error", null, "not_found").ToResult())
            .ExcludeFromDescription();
        return app;
    }
}
