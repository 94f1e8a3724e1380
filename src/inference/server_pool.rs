//! Several servers of one model (`server=a:8001,b:8001`): each request goes to the server with
//! the fewest requests outstanding (one HTTP/2 channel sticks to one pod behind a Kubernetes
//! Service; several addresses spread the load). A server whose request fails for a passing
//! reason is set aside and the request goes on to another at once, so no frame is lost while
//! one is up; a server set aside is tried again after a pause that doubles while it keeps
//! failing. Frames keep their order: callers collect each frame's answer by its ticket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::remote::RemoteModel;
use super::retry::Attempt;
use super::{InferenceError, Tensor, TensorSpec, TensorView};

/// The first pause of a server set aside; it doubles up to [`MAX_SET_ASIDE`].
pub const FIRST_SET_ASIDE: Duration = Duration::from_secs(1);
pub const MAX_SET_ASIDE: Duration = Duration::from_secs(30);

/// Connects to one server (at start, and again when a server that could not be reached is
/// tried later).
pub type Connector = Box<dyn Fn() -> Result<Box<dyn RemoteModel>, InferenceError> + Send + Sync>;

/// Hears what happens to the servers, in words naming the server (an element warns on the bus).
pub type ServerObserver = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, Default)]
struct Health {
    /// Set aside until then.
    set_aside_until: Option<Instant>,
    /// The next pause if it fails again.
    pause: Duration,
}

struct Member {
    /// As messages name it (no password).
    address: String,
    connector: Connector,
    model: RwLock<Option<Arc<dyn RemoteModel>>>,
    outstanding: AtomicUsize,
    health: Mutex<Health>,
}

impl Member {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn available(&self, now: Instant) -> bool {
        self.health()
            .set_aside_until
            .is_none_or(|until| until <= now)
    }
}

/// One model on several servers, as one [`RemoteModel`].
pub struct ServerPool {
    members: Vec<Member>,
    display_name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    observer: Option<ServerObserver>,
    /// Where the search for the least busy server starts, turning so that ties spread.
    turn: AtomicUsize,
}

/// Whether `model` declares these tensors.
fn declares(model: &dyn RemoteModel, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> bool {
    model.input_specs() == inputs && model.output_specs() == outputs
}

/// The server at `address` serves another model than the one at `first`.
fn other_tensors(address: &str, first: &str) -> InferenceError {
    InferenceError::ModelLoad {
        path: address.to_string(),
        reason: format!(
            "it declares other tensors than {first}: the servers of a list must serve the same \
             model"
        ),
    }
}

impl ServerPool {
    /// Connects to each `(address, connector)`; a server that cannot be reached is set aside
    /// (and said to `observer`) as long as one can be; they must all declare the same tensors.
    /// `model` names the model in messages.
    pub fn connect(
        model: &str,
        servers: Vec<(String, Connector)>,
        observer: Option<ServerObserver>,
    ) -> Result<Self, InferenceError> {
        let addresses: Vec<&str> = servers.iter().map(|(a, _)| a.as_str()).collect();
        let display_name = format!("{model} on {}", addresses.join(", "));
        let mut members = Vec::with_capacity(servers.len());
        let mut specs: Option<(Vec<TensorSpec>, Vec<TensorSpec>)> = None;
        let mut failures = Vec::new();
        for (address, connector) in servers {
            let member = Member {
                address,
                connector,
                model: RwLock::new(None),
                outstanding: AtomicUsize::new(0),
                health: Mutex::new(Health {
                    set_aside_until: None,
                    pause: FIRST_SET_ASIDE,
                }),
            };
            match (member.connector)() {
                Ok(connected) => {
                    match &specs {
                        Some((inputs, outputs)) if !declares(&*connected, inputs, outputs) => {
                            let first = members.first().map_or("", |m: &Member| &m.address);
                            return Err(other_tensors(&member.address, first));
                        }
                        Some(_) => {}
                        None => {
                            specs = Some((
                                connected.input_specs().to_vec(),
                                connected.output_specs().to_vec(),
                            ))
                        }
                    }
                    *member.model.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(connected.into());
                }
                Err(error) => {
                    member.health().set_aside_until = Some(Instant::now() + FIRST_SET_ASIDE);
                    failures.push(error);
                }
            }
            members.push(member);
        }
        let Some((inputs, outputs)) = specs else {
            // None could be reached: the first one's error says why.
            return Err(failures
                .into_iter()
                .next()
                .unwrap_or(InferenceError::ModelLoad {
                    path: display_name,
                    reason: "no server is listed".into(),
                }));
        };
        let pool = Self {
            members,
            display_name,
            inputs,
            outputs,
            observer,
            turn: AtomicUsize::new(0),
        };
        for error in failures {
            pool.say(&format!("{error}; set aside, the other servers serve"));
        }
        Ok(pool)
    }

    fn say(&self, text: &str) {
        if let Some(observer) = &self.observer {
            observer(text);
        }
    }

    /// The available server not yet `tried` with the fewest requests outstanding.
    fn pick(&self, tried: &[bool]) -> Option<usize> {
        let now = Instant::now();
        let count = self.members.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % count;
        (0..count)
            .map(|offset| (start + offset) % count)
            .filter(|&i| !tried[i] && self.members[i].available(now))
            .min_by_key(|&i| self.members[i].outstanding.load(Ordering::SeqCst))
    }

    /// The connected model of member `index`, connecting it again if it has none.
    fn model_of(&self, index: usize) -> Result<Arc<dyn RemoteModel>, InferenceError> {
        let member = &self.members[index];
        if let Some(model) = member
            .model
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(model);
        }
        let connected = (member.connector)()?;
        if !declares(&*connected, &self.inputs, &self.outputs) {
            let other = self.members.iter().find(|m| m.address != member.address);
            return Err(other_tensors(
                &member.address,
                other.map_or("", |m| &m.address),
            ));
        }
        let connected: Arc<dyn RemoteModel> = connected.into();
        *member.model.write().unwrap_or_else(|e| e.into_inner()) = Some(connected.clone());
        Ok(connected)
    }

    fn set_aside(&self, index: usize, error: &InferenceError) {
        let member = &self.members[index];
        let pause = {
            let mut health = member.health();
            let pause = health.pause;
            health.set_aside_until = Some(Instant::now() + pause);
            health.pause = (pause * 2).min(MAX_SET_ASIDE);
            pause
        };
        self.say(&format!(
            "{error}; {} set aside for {} s, the other servers serve",
            member.address,
            pause.as_secs()
        ));
    }

    fn served(&self, index: usize) {
        let member = &self.members[index];
        let mut health = member.health();
        if health.set_aside_until.take().is_some() {
            health.pause = FIRST_SET_ASIDE;
            drop(health);
            self.say(&format!("{} serves again", member.address));
        }
    }
}

impl RemoteModel for ServerPool {
    fn display_name(&self) -> &str {
        &self.display_name
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
        let mut tried = vec![false; self.members.len()];
        let mut last_error = None;
        while let Some(index) = self.pick(&tried) {
            tried[index] = true;
            let member = &self.members[index];
            member.outstanding.fetch_add(1, Ordering::SeqCst);
            let result = self
                .model_of(index)
                .and_then(|model| model.request(inputs, outputs, attempt));
            member.outstanding.fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(tensors) => {
                    self.served(index);
                    return Ok(tensors);
                }
                Err(error)
                    if !attempt.is_cancelled()
                        && (error.is_transient()
                            || matches!(
                                error,
                                InferenceError::ServerUnusable { .. }
                                    | InferenceError::ModelLoad { .. }
                            )) =>
                {
                    self.set_aside(index, &error);
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| InferenceError::Unavailable {
            reason: format!(
                "{}: every server is set aside after failing",
                self.display_name
            ),
            retry_after: None,
        }))
    }
}

/// The `server` property as a list: addresses separated by commas, each once.
pub fn server_list(text: &str) -> Result<Vec<String>, String> {
    let mut servers: Vec<String> = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(format!(
                "address {} of the list is empty (expected host:port, host:port, ...)",
                index + 1
            ));
        }
        if servers.iter().any(|s| s == entry) {
            return Err(format!(
                "{} is listed twice",
                super::secrets::redact_url(entry)
            ));
        }
        servers.push(entry.to_string());
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::ElementType;
    use crate::inference::cancel::Cancellation;
    use crate::inference::remote::request_error;
    use crate::inference::retry::RetryPolicy;
    use std::sync::atomic::AtomicBool;

    /// A server that answers with its number, or fails while `down`.
    struct Fake {
        number: f32,
        down: Arc<AtomicBool>,
        specs: Vec<TensorSpec>,
    }

    impl RemoteModel for Fake {
        fn display_name(&self) -> &str {
            "fake"
        }
        fn input_specs(&self) -> &[TensorSpec] {
            &self.specs
        }
        fn output_specs(&self) -> &[TensorSpec] {
            &self.specs
        }
        fn request(
            &self,
            _: &[TensorView<'_>],
            _: &[TensorSpec],
            _: &Attempt<'_>,
        ) -> Result<Vec<Tensor>, InferenceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(request_error("fake", "connection refused", true));
            }
            Ok(vec![Tensor {
                shape: vec![1],
                data: vec![self.number],
            }])
        }
    }

    fn spec() -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "x".into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1)],
        }]
    }

    fn server(number: f32, down: &Arc<AtomicBool>) -> (String, Connector) {
        let down = down.clone();
        (
            format!("server-{number}"),
            Box::new(move || {
                Ok(Box::new(Fake {
                    number,
                    down: down.clone(),
                    specs: spec(),
                }) as Box<dyn RemoteModel>)
            }),
        )
    }

    fn ask(pool: &ServerPool) -> Result<f32, InferenceError> {
        let cancellation = Cancellation::default();
        let policy = RetryPolicy::new(0, Duration::from_secs(1), None);
        policy.run("pool", &cancellation, None, |attempt| {
            pool.request(&[], &spec(), attempt)
                .map(|tensors| tensors[0].data[0])
        })
    }

    #[test]
    fn a_failing_server_is_set_aside_and_its_request_served_by_another() {
        let (a_down, b_down) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = said.clone();
        let pool = ServerPool::connect(
            "'m'",
            vec![server(1.0, &a_down), server(2.0, &b_down)],
            Some(Box::new(move |text: &str| {
                log.lock().unwrap().push(text.into())
            })),
        )
        .unwrap();
        // Idle servers take turns.
        let answers: Vec<f32> = (0..4).map(|_| ask(&pool).unwrap()).collect();
        assert!(
            answers.contains(&1.0) && answers.contains(&2.0),
            "{answers:?}"
        );
        a_down.store(true, Ordering::SeqCst);
        for _ in 0..4 {
            assert_eq!(
                ask(&pool).unwrap(),
                2.0,
                "every request served while one is up"
            );
        }
        let said = said.lock().unwrap().join("\n");
        assert!(said.contains("server-1 set aside for 1 s"), "{said}");
        assert_eq!(
            said.matches("set aside").count(),
            1,
            "asked once, then left alone"
        );
        b_down.store(true, Ordering::SeqCst);
        let err = ask(&pool).unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn a_server_list_is_addresses_separated_by_commas_each_once() {
        assert_eq!(server_list(" a:1 ,b:2").unwrap(), ["a:1", "b:2"]);
        assert!(
            server_list("a:1,,b:2")
                .unwrap_err()
                .contains("address 2 of the list is empty")
        );
        assert!(
            server_list("a:1,a:1")
                .unwrap_err()
                .contains("a:1 is listed twice")
        );
        assert!(
            !server_list("http://u:secret@h,http://u:secret@h")
                .unwrap_err()
                .contains("secret")
        );
    }

    #[test]
    fn servers_that_cannot_be_reached_at_start_are_set_aside_unless_none_can() {
        let up = Arc::new(AtomicBool::new(false));
        let unreachable = || -> (String, Connector) {
            (
                "gone".into(),
                Box::new(|| Err(request_error("'m' on gone", "connection refused", true))),
            )
        };
        let said = Arc::new(Mutex::new(String::new()));
        let log = said.clone();
        let pool = ServerPool::connect(
            "'m'",
            vec![unreachable(), server(2.0, &up)],
            Some(Box::new(move |text: &str| {
                log.lock().unwrap().push_str(text)
            })),
        )
        .unwrap();
        assert!(
            said.lock().unwrap().contains("'m' on gone"),
            "{}",
            said.lock().unwrap()
        );
        assert_eq!(ask(&pool).unwrap(), 2.0);
        let err = ServerPool::connect("'m'", vec![unreachable(), unreachable()], None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
