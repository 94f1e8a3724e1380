//! What a server request carries and what no one else may read, against a real Triton server
//! whose inference is behind its access token (Triton's restricted API, checked by Triton
//! itself): the `headers` property reaches the server over both protocols, and neither the
//! token nor a server URL's password appears in anything the bus, the properties or the debug
//! log (every category at level LOG, GST_DEBUG=*:6) say, in success and in failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use gst::glib;
use gst::prelude::*;

/// A server URL's password in the secrets test: it must never be read back.
const PASSWORD: &str = "pa55-Wd-9f3c";

fn u2netp() -> PathBuf {
    let home = std::env::var("U2NET_HOME")
        .unwrap_or_else(|_| format!("{}/.u2net", std::env::var("HOME").unwrap()));
    Path::new(&home).join("u2netp.onnx")
}

/// Triton with u2netp, inference restricted to holders of its access token.
fn server() -> &'static triton_server::TritonServer {
    static SERVER: OnceLock<triton_server::TritonServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        triton_server::start_with_options(
            &python_in("NEURALFX_TRITON_VENV"),
            &reference_script("triton_server.py"),
            &temp_dir_of("triton", "-restricted"),
            &["--restrict-inference"],
            &[("u2netp", &u2netp())],
        )
    })
}

fn endpoints(server: &triton_server::TritonServer) -> [(&'static str, String); 2] {
    [
        ("triton-http", server.http.clone()),
        ("triton", server.grpc.clone()),
    ]
}

/// The header of Triton's restricted API for `backend`'s protocol.
fn token_header(backend: &str) -> &'static str {
    match backend {
        "triton" => "triton-grpc-protocol-triton-access-token",
        _ => "triton-access-token",
    }
}

#[test]
fn headers_carry_the_access_token_the_server_asks_for_over_both_protocols() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in endpoints(server) {
        // From a file, as the docs advise: GStreamer's parser logs a description's values.
        let headers = temp_dir_of("headers", "").join(format!("{backend}.headers"));
        std::fs::write(
            &headers,
            format!(
                "# the tests' tenant and token\nx-tenant: neuralfx-tests\n{}: {}\n",
                token_header(backend),
                server.access_token
            ),
        )
        .unwrap();
        let (samples, _) = collect_samples_and_warnings(&format!(
            "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend={backend} server={address} model=u2netp \
               request-timeout=60000 headers=@{} ! appsink name=sink",
            headers.display()
        ))
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(samples.len(), 2, "{backend}");
        // Without the header, Triton's own refusal reaches the bus.
        let (err, _) =
            rembgfilter_error(&format!("backend={backend} server={address} model=u2netp"));
        assert!(
            err.contains("triton-access-token") && err.contains(&address),
            "{backend}: {err}"
        );
    }
}

#[test]
fn a_header_without_a_colon_is_refused_at_start_without_its_value() {
    if without_set_up() {
        return;
    }
    let server = server();
    let (err, _) = rembgfilter_error(&format!(
        "backend=triton-http server={} model=u2netp headers=\"Bearer not-the-token\"",
        server.http
    ));
    assert!(
        err.contains("property 'headers'") && err.contains("entry 1 has no ':'"),
        "{err}"
    );
    assert!(!err.contains("not-the-token"), "{err}");
}

/// Everything GStreamer's debug log prints from now on, every category at LOG.
fn capture_debug_log() -> Arc<Mutex<String>> {
    let captured = Arc::new(Mutex::new(String::new()));
    let sink = captured.clone();
    gst::log::set_active(true);
    // Only here: on stderr, tens of thousands of lines would bury the other binaries' results.
    gst::log::remove_default_log_function();
    gst::log::set_default_threshold(gst::DebugLevel::Log);
    // The logged object is left out: naming it may take a lock its caller holds.
    gst::log::add_log_function(
        move |category, level, file, function, line, _object, message| {
            let text = message.get().map(|m| m.to_string()).unwrap_or_default();
            let line = format!(
                "{level:?} {} {file}:{line}:{function} {text}\n",
                category.name()
            );
            sink.lock().unwrap().push_str(&line);
        },
    );
    captured
}

/// Runs two frames through rembgfilter with `secret_properties` set in code (GStreamer's own
/// parser logs a pipeline description's values, so secrets never go through one), and returns
/// everything said: bus messages with their debug text, the element's readable properties
/// during and after the run, and property notifications.
fn everything_said(backend: &str, secret_properties: &[(&str, String)]) -> String {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter name=nf backend={backend} model=u2netp request-timeout=60000 ! fakesink"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let element = pipeline.by_name("nf").unwrap();
    for (name, value) in secret_properties {
        element.set_property(name, value);
    }
    let said = Arc::new(Mutex::new(String::new()));
    let notified = said.clone();
    pipeline.connect("deep-notify", false, move |values| {
        let object = values[1].get::<gst::Object>().unwrap();
        let spec = values[2].get::<glib::ParamSpec>().unwrap();
        if spec.flags().contains(glib::ParamFlags::READABLE) {
            let value = object.property_value(spec.name());
            notified
                .lock()
                .unwrap()
                .push_str(&format!("notify {} = {value:?}\n", spec.name()));
        }
        None
    });
    let read_properties = |said: &mut String| {
        for spec in element.list_properties() {
            if spec.flags().contains(glib::ParamFlags::READABLE) {
                said.push_str(&format!(
                    "{} = {:?}\n",
                    spec.name(),
                    element.property_value(spec.name())
                ));
            }
        }
    };
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    for message in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        let text = match message.view() {
            gst::MessageView::Error(m) => format!("error {} {:?}", m.error(), m.debug()),
            gst::MessageView::Warning(m) => format!("warning {} {:?}", m.error(), m.debug()),
            gst::MessageView::Info(m) => format!("info {} {:?}", m.error(), m.debug()),
            _ => format!("{message:?}"),
        };
        said.lock().unwrap().push_str(&text);
        said.lock().unwrap().push('\n');
        read_properties(&mut said.lock().unwrap());
        if matches!(
            message.view(),
            gst::MessageView::Eos(_) | gst::MessageView::Error(_)
        ) {
            break;
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    read_properties(&mut said.lock().unwrap());
    said.lock().unwrap().clone()
}

#[test]
fn no_password_or_token_appears_on_the_bus_in_properties_or_in_the_debug_log() {
    if without_set_up() {
        return;
    }
    let server = server();
    let token = server.access_token.clone();
    let log = capture_debug_log();
    let with_password = |address: &str| format!("http://neuralfx:{PASSWORD}@{address}");
    let headers = |backend: &str| {
        format!(
            "authorization: Bearer {token}; {}: {token}",
            token_header(backend)
        )
    };
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let runs = [
        // Served: the URL's password (which Triton ignores) and the token both travel.
        (
            "triton-http",
            vec![
                ("server", with_password(&server.http)),
                ("headers", headers("triton-http")),
            ],
            "eos",
        ),
        (
            "triton",
            vec![
                ("server", server.grpc.clone()),
                ("headers", headers("triton")),
            ],
            "eos",
        ),
        // Refused by Triton: a wrong token.
        (
            "triton-http",
            vec![
                ("server", with_password(&server.http)),
                ("headers", format!("triton-access-token: {PASSWORD}")),
            ],
            "error",
        ),
        // No server there: the transport's own error names the URL.
        (
            "triton-http",
            vec![
                ("server", with_password(&format!("127.0.0.1:{unused_port}"))),
                ("headers", headers("triton-http")),
            ],
            "error",
        ),
    ];
    for (backend, properties, ending) in runs {
        let said = everything_said(backend, &properties);
        assert!(
            said.to_lowercase().contains(ending),
            "{backend}: no {ending}: {said}"
        );
        for secret in [PASSWORD, token.as_str()] {
            assert!(
                !said.contains(secret),
                "{backend}: a secret was said:\n{said}"
            );
        }
        assert!(
            said.contains("***"),
            "{backend}: nothing read back redacted:\n{said}"
        );
    }
    let log = log.lock().unwrap();
    assert!(log.contains("rembgfilter"), "the debug log was captured");
    for secret in [PASSWORD, token.as_str()] {
        let leaks: Vec<&str> = log.lines().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "the debug log says a secret: {leaks:#?}");
    }
}

/// A private CA, a server certificate it signed for `triton.neuralfx.test` only (not for
/// 127.0.0.1, where the proxy listens) and a client certificate it signed, as PEM files.
struct Certificates {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

const SERVER_NAME: &str = "triton.neuralfx.test";

impl Certificates {
    fn write(dir: &Path) -> Certificates {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "neuralfx test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let signed = |names: Vec<String>, common_name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            let certificate = params.signed_by(&key, &ca, &ca_key).unwrap();
            (certificate.pem(), key.serialize_pem())
        };
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (server_pem, server_key) = signed(vec![SERVER_NAME.into()], SERVER_NAME);
        let (client_pem, client_key) = signed(vec![], "neuralfx client");
        Certificates {
            ca: write("ca.pem", &ca.pem()),
            server: (
                write("server.pem", &server_pem),
                write("server.key", &server_key),
            ),
            client: (
                write("client.pem", &client_pem),
                write("client.key", &client_key),
            ),
        }
    }
}

/// tests/reference/tls_proxy.py in front of `upstream`.
fn start_tls_proxy(
    dir: &Path,
    name: &str,
    certificates: &Certificates,
    upstream: &str,
) -> ReferenceServer {
    start_reference_server(
        &python_in("NEURALFX_TRITON_VENV"),
        "tls_proxy.py",
        &[
            certificates.server.0.as_os_str(),
            certificates.server.1.as_os_str(),
            certificates.ca.as_os_str(),
            upstream.as_ref(),
        ],
        dir,
        name,
    )
}

#[test]
fn a_server_behind_mutual_tls_is_reached_with_the_ca_the_client_certificate_and_its_name() {
    if without_set_up() {
        return;
    }
    let server = server();
    let dir = temp_dir_of("tls", "");
    let certificates = Certificates::write(&dir);
    let ca = format!("tls-ca-file={}", certificates.ca.display());
    let client = format!(
        "tls-certificate={} tls-key={}",
        certificates.client.0.display(),
        certificates.client.1.display()
    );
    let name = format!("tls-server-name={SERVER_NAME}");
    for (backend, scheme, upstream) in [
        ("triton-http", "https", &server.http),
        ("triton", "grpcs", &server.grpc),
    ] {
        let proxy = start_tls_proxy(&dir, backend, &certificates, upstream);
        let port = proxy.port;
        let address = format!("{scheme}://127.0.0.1:{port}");
        // Triton behind the proxy still asks for its token.
        let headers = dir.join(format!("{backend}.headers"));
        std::fs::write(
            &headers,
            format!("{}: {}\n", token_header(backend), server.access_token),
        )
        .unwrap();
        let on = format!(
            "backend={backend} server={address} model=u2netp headers=@{}",
            headers.display()
        );
        let (samples, _) = collect_samples_and_warnings(&format!(
            "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter {on} {ca} {client} {name} request-timeout=60000 ! appsink name=sink"
        ))
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(samples.len(), 2, "{backend}");
        // Without the client certificate, the proxy turns the client away in the handshake;
        // without the name, the certificate (for triton.neuralfx.test) does not fit 127.0.0.1;
        // without the CA, nobody vouches for it. Each is an error naming the server.
        for (missing, properties) in [
            ("client certificate", format!("{ca} {name}")),
            ("server name", format!("{ca} {client}")),
            ("CA", format!("{client} {name}")),
        ] {
            let (err, _) = rembgfilter_error(&format!("{on} {properties}"));
            assert!(
                err.contains(&format!("127.0.0.1:{port}"))
                    && (missing == "client certificate"
                        || err.contains("invalid peer certificate")),
                "{backend} without the {missing}: {err}"
            );
        }
    }
    // Files that cannot serve stop the element at start, naming the property and the file.
    let (err, _) = rembgfilter_error(&format!(
        "backend=triton-http server=https://{} model=u2netp tls-ca-file=/no/such/ca.pem",
        server.http
    ));
    assert!(
        err.contains("property 'tls-ca-file'") && err.contains("/no/such/ca.pem"),
        "{err}"
    );
    let (err, _) = rembgfilter_error(&format!(
        "backend=triton server={} model=u2netp {ca}",
        server.grpc
    ));
    assert!(err.contains("need a grpcs:// or https:// address"), "{err}");
}
