using System.Text.Json.Nodes;
using Microsoft.OpenApi;
using MoeServe.Api.Endpoints;
using MoeServe.Api.Hosting;
using MoeServe.Routing;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace MoeServe.Api.OpenApi;

/// <summary>Documents the generation operations: the X-Routing-* request and response headers, and the schema of streamed events.</summary>
public sealed class GenerationOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (!context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<RoutingHeadersMetadata>().Any()) return;
        operation.Parameters ??= [];
        operation.Parameters.Add(new OpenApiParameter
        {
            Name = RoutingSelection.PolicyHeader,
            In = ParameterLocation.Header,
            Description = "Routing policy for this request (default: configuration Routing:Policy). Must agree with moe_routing.policy in the body.",
            Schema = new OpenApiSchema { Type = JsonSchemaType.String, Enum = RoutingPolicyNames.All.Select(n => (JsonNode)JsonValue.Create(n)!).ToList() },
        });
        operation.Parameters.Add(new OpenApiParameter
        {
            Name = RoutingSelection.CapacityHeader,
            In = ParameterLocation.Header,
            Description = "Capacity factor gamma > 0 for capacity-aware policies: C = max(1, ceil(gamma * k * T / E)).",
            Schema = new OpenApiSchema { Type = JsonSchemaType.Number, Format = "double" },
        });
        var streamed = context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<StreamedAs>().FirstOrDefault();
        if (operation.Responses?.TryGetValue("200", out var ok) == true && ok is OpenApiResponse response)
        {
            // One status code maps to one CLR type in endpoint metadata; the event stream's items differ.
            if (streamed is not null && response.Content?.ContainsKey("text/event-stream") == true)
            {
                response.Content["text/event-stream"] = new OpenApiMediaType { Schema = context.SchemaGenerator.GenerateSchema(streamed.ChunkType, context.SchemaRepository) };
                response.Description = "A JSON object, or with stream = true server-sent events: 'data: {chunk}' lines ending with 'data: [DONE]'.";
            }
            response.Headers ??= new Dictionary<string, IOpenApiHeader>();
            response.Headers[RoutingSelection.PolicyHeader] = new OpenApiHeader { Description = "The routing policy applied.", Schema = new OpenApiSchema { Type = JsonSchemaType.String } };
            response.Headers[RoutingSelection.CapacityHeader] = new OpenApiHeader { Description = "The capacity factor applied, or 'none'.", Schema = new OpenApiSchema { Type = JsonSchemaType.String } };
        }
    }
}
