//! Reads connector definitions (Power Platform packages, Swagger 2.0, OpenAPI 3.x) into the model, with diagnostics.
