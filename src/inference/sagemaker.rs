//! A model behind an AWS SageMaker endpoint, invoked with the official AWS SDK (credentials and
//! region from the standard AWS chain, or the element's properties). Tensors travel in the
//! format of Triton-based SageMaker endpoints (`application/vnd.sagemaker-triton.binary+json`):
//! KServe v2's binary body, with the JSON header's length in the content type.

use std::time::Duration;

use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::config::timeout::TimeoutConfig;
use aws_sdk_sagemakerruntime::config::{BehaviorVersion, Region};
use aws_sdk_sagemakerruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::primitives::Blob;

use super::image_payload::{ImageEncoding, decode_mask, encode_frame};
use super::remote::{BlockingRuntime, RemoteModel, request_error};
use super::retry::Attempt;
use super::triton::http::{infer_request, parse_infer_response};
use super::{ElementType, InferenceError, Tensor, TensorSpec, TensorView};

/// The content type of Triton's SageMaker binary tensor format.
pub const TRITON_BINARY_JSON: &str = "application/vnd.sagemaker-triton.binary+json";

/// The largest answer accepted: the same bound as a Triton answer.
const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// Where an endpoint is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct EndpointSettings {
    /// The endpoint's name.
    pub endpoint: String,
    /// The AWS region; `None` takes it from the standard chain (AWS_REGION, the profile).
    pub region: Option<String>,
    /// Another URL for the SageMaker runtime API (a test server, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// The content type sent instead of Triton's binary+json, for custom containers.
    pub content_type: Option<String>,
    /// Bounds each call, connecting included.
    pub timeout: Duration,
    /// Where the endpoint sends the request: a multi-model endpoint's model (`TargetModel`),
    /// a production variant (`TargetVariant`), an inference component
    /// (`InferenceComponentName`).
    pub routing: Routing,
    /// Passed through to the container as it is (`CustomAttributes`).
    pub custom_attributes: Option<String>,
}

/// Which model behind an endpoint answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub target_model: Option<String>,
    pub target_variant: Option<String>,
    pub inference_component: Option<String>,
}

impl Routing {
    /// ` (target model 'm.tar.gz', variant 'blue')`, or nothing: what messages add to the
    /// endpoint's name.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("target model", &self.target_model),
            ("variant", &self.target_variant),
            ("inference component", &self.inference_component),
        ]
        .into_iter()
        .filter_map(|(what, value)| value.as_ref().map(|value| format!("{what} '{value}'")))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// An AWS client on a runtime of its own, for the element's threads to block on.
pub struct EndpointClient {
    runtime: BlockingRuntime,
    client: Client,
    settings: EndpointSettings,
    display_name: String,
}

impl EndpointClient {
    /// Loads the AWS configuration and checks that credentials and a region are there; the
    /// endpoint itself is first reached by the first request (SageMaker has no health call).
    pub fn connect(settings: EndpointSettings) -> Result<Self, InferenceError> {
        let routing = settings.routing.describe();
        let display_name = match &settings.endpoint_url {
            Some(url) => format!(
                "SageMaker endpoint '{}'{routing} at {}",
                settings.endpoint,
                super::secrets::redact_url(url)
            ),
            None => format!("SageMaker endpoint '{}'{routing}", settings.endpoint),
        };
        let load_error = |reason: String| InferenceError::ModelLoad {
            path: display_name.clone(),
            reason,
        };
        if settings.endpoint.is_empty() {
            return Err(load_error("property 'endpoint' is not set".into()));
        }
        let runtime = BlockingRuntime::new("neuralfx-sagemaker")
            .map_err(|e| load_error(format!("cannot start the AWS runtime: {e}")))?;
        let timeout = settings.timeout;
        let setup_timeout = timeout.max(Duration::from_secs(5));
        let loader = {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(timeout)
                        .operation_timeout(timeout)
                        .build(),
                )
                // The element's own 'retries' decides what is sent again, and says so.
                .retry_config(RetryConfig::disabled());
            if let Some(region) = &settings.region {
                loader = loader.region(Region::new(region.clone()));
            }
            if let Some(url) = &settings.endpoint_url {
                loader = loader.endpoint_url(url);
            }
            loader
        };
        let config = runtime
            .within(&display_name, setup_timeout, loader.load())
            .map_err(|_| load_error("the AWS configuration did not load".into()))?;
        if config.region().is_none() {
            return Err(load_error(
                "no AWS region: set property 'region' or AWS_REGION".into(),
            ));
        }
        let credentials = config.credentials_provider().ok_or_else(|| {
            load_error("no AWS credentials provider in the AWS configuration".into())
        })?;
        use aws_sdk_sagemakerruntime::config::ProvideCredentials;
        runtime
            .within(
                &display_name,
                setup_timeout,
                credentials.provide_credentials(),
            )
            .map_err(|_| load_error("no AWS credentials in time".into()))?
            .map_err(|e| {
                load_error(format!(
                    "no AWS credentials ({}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a \
                     profile, SSO or an instance role",
                    DisplayErrorContext(&e)
                ))
            })?;
        Ok(Self {
            runtime,
            client: Client::new(&config),
            settings,
            display_name,
        })
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// Sends `body` as `content_type` as one try of a request; returns the answer's body and
    /// content type.
    pub fn invoke(
        &self,
        body: Vec<u8>,
        content_type: &str,
        attempt: &Attempt<'_>,
    ) -> Result<(Vec<u8>, Option<String>), InferenceError> {
        let call = self
            .client
            .invoke_endpoint()
            .endpoint_name(&self.settings.endpoint)
            .set_target_model(self.settings.routing.target_model.clone())
            .set_target_variant(self.settings.routing.target_variant.clone())
            .set_inference_component_name(self.settings.routing.inference_component.clone())
            .set_custom_attributes(self.settings.custom_attributes.clone())
            .content_type(content_type)
            .body(Blob::new(body))
            .send();
        let answer = self
            .runtime
            .attempt(&self.display_name, attempt, call)?
            .map_err(|e| self.call_error(e))?;
        let body = answer.body.map(Blob::into_inner).unwrap_or_default();
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(request_error(
                &self.display_name,
                format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                false,
            ));
        }
        Ok((body, answer.content_type))
    }

    /// A failed call in words, transient when sending it again may work (throttling, service
    /// unavailable, no connection); a model error carries the container's own status and
    /// message.
    fn call_error<R: std::fmt::Debug + Send + Sync + 'static>(
        &self,
        error: SdkError<InvokeEndpointError, R>,
    ) -> InferenceError {
        let (text, transient) = match &error {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let code = err.code().unwrap_or("an unnamed error");
                let message = err.message().unwrap_or_default();
                let transient = matches!(
                    err,
                    InvokeEndpointError::ServiceUnavailable(_)
                        | InvokeEndpointError::InternalFailure(_)
                        | InvokeEndpointError::ModelNotReadyException(_)
                ) || code.contains("Throttl");
                let mut text = format!("SageMaker answered {code}: {message}");
                if let InvokeEndpointError::ModelError(model) = err
                    && let Some(status) = model.original_status_code()
                {
                    text.push_str(&format!(" (the container answered {status}"));
                    if let Some(original) = model.original_message() {
                        text.push_str(&format!(": {original}"));
                    }
                    text.push(')');
                }
                (text, transient)
            }
            SdkError::TimeoutError(_) => (
                format!("no answer within {:?}", self.settings.timeout),
                true,
            ),
            SdkError::DispatchFailure(failure) => {
                let cause = failure
                    .as_connector_error()
                    .map(|e| super::error_with_causes(e))
                    .unwrap_or_else(|| super::error_with_causes(&error));
                (format!("the request was not sent: {cause}"), true)
            }
            SdkError::ResponseError(_) => (super::error_with_causes(&error), true),
            _ => (super::error_with_causes(&error), false),
        };
        request_error(&self.display_name, text, transient)
    }
}

/// The content type of a Triton binary+json body whose JSON header is `header_len` bytes.
pub fn binary_json_content_type(base: &str, header_len: usize) -> String {
    format!("{base};json-header-size={header_len}")
}

/// The JSON header length a binary+json answer's content type declares; `None` when the answer
/// is JSON alone.
pub fn json_header_size(content_type: Option<&str>) -> Result<Option<usize>, String> {
    let Some(content_type) = content_type else {
        return Ok(None);
    };
    for parameter in content_type.split(';').skip(1) {
        if let Some((key, value)) = parameter.split_once('=')
            && key.trim().eq_ignore_ascii_case("json-header-size")
        {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("content type '{content_type}' has a bad json-header-size"));
        }
    }
    Ok(None)
}

/// A model served by a Triton-based SageMaker endpoint: tensors in, tensors out. SageMaker has
/// no metadata call, so the tensors' names and shapes come from the same model as a local file
/// (`inputs`, `outputs`).
pub struct SageMakerTensorBackend {
    client: EndpointClient,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl SageMakerTensorBackend {
    pub fn new(client: EndpointClient, inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> Self {
        Self {
            client,
            inputs,
            outputs,
        }
    }
}

impl RemoteModel for SageMakerTensorBackend {
    fn display_name(&self) -> &str {
        self.client.display_name()
    }

    fn input_specs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn output_specs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn request(
        &self,
        inputs: &[TensorView<'_>],
        outputs: &[TensorSpec],
        attempt: &Attempt<'_>,
    ) -> Result<Vec<Tensor>, InferenceError> {
        let name = self.client.display_name();
        let run_error = |reason: String| request_error(name, reason, false);
        let pairs: Vec<_> = self.inputs.iter().zip(inputs.iter().copied()).collect();
        let (body, header_len) = infer_request(&pairs, outputs);
        let base = self
            .client
            .settings
            .content_type
            .as_deref()
            .unwrap_or(TRITON_BINARY_JSON);
        let content_type = binary_json_content_type(base, header_len);
        let (answer, answer_type) = self.client.invoke(body, &content_type, attempt)?;
        let header_len = json_header_size(answer_type.as_deref()).map_err(run_error)?;
        let wanted: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
        parse_infer_response(header_len, &answer, &wanted).map_err(run_error)
    }
}

/// A custom container that takes the frame as a picture and answers with its mask (a rembg
/// container, say): it does its own processing, so the element sends whole frames
/// ([`ModelProfile::WHOLE_FRAME`](crate::segmentation::catalog::ModelProfile::WHOLE_FRAME)) and
/// uses the mask that comes back as its own model's.
pub struct SageMakerImageBackend {
    client: EndpointClient,
    encoding: ImageEncoding,
    inputs: [TensorSpec; 1],
    outputs: [TensorSpec; 1],
}

impl SageMakerImageBackend {
    pub fn new(client: EndpointClient, encoding: ImageEncoding) -> Self {
        let any_size = |name: &str, channels: usize| TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1), None, None, Some(channels)],
        };
        Self {
            client,
            encoding,
            inputs: [any_size("frame", 3)],
            outputs: [any_size("mask", 1)],
        }
    }
}

impl RemoteModel for SageMakerImageBackend {
    fn display_name(&self) -> &str {
        self.client.display_name()
    }

    fn input_specs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn output_specs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// The mask of the one frame given, whatever outputs are asked for: the container has one.
    fn request(
        &self,
        inputs: &[TensorView<'_>],
        _outputs: &[TensorSpec],
        attempt: &Attempt<'_>,
    ) -> Result<Vec<Tensor>, InferenceError> {
        let name = self.client.display_name();
        let run_error = |reason: String| request_error(name, reason, false);
        let [frame] = inputs else {
            return Err(run_error(format!(
                "takes one frame, {} given",
                inputs.len()
            )));
        };
        let body = encode_frame(frame, self.encoding).map_err(run_error)?;
        let content_type = self
            .client
            .settings
            .content_type
            .as_deref()
            .unwrap_or(self.encoding.content_type());
        let (answer, answer_type) = self.client.invoke(body, content_type, attempt)?;
        let (height, width) = (frame.shape[1], frame.shape[2]);
        let mask =
            decode_mask(&answer, answer_type.as_deref(), width, height).map_err(run_error)?;
        Ok(vec![mask])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_header_size_travels_in_the_content_type() {
        assert_eq!(
            binary_json_content_type(TRITON_BINARY_JSON, 123),
            "application/vnd.sagemaker-triton.binary+json;json-header-size=123"
        );
        assert_eq!(
            json_header_size(Some(
                "application/vnd.sagemaker-triton.binary+json; json-header-size=57"
            )),
            Ok(Some(57))
        );
        assert_eq!(json_header_size(Some("application/json")), Ok(None));
        assert_eq!(json_header_size(None), Ok(None));
        assert!(json_header_size(Some("x;json-header-size=-1")).is_err());
    }

    #[test]
    fn an_unset_endpoint_is_named() {
        let err = EndpointClient::connect(EndpointSettings {
            timeout: Duration::from_secs(1),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("property 'endpoint'"), "{err}");
    }
}
