//! The photos the fast variants' masks are judged on (tests and the speed bench): sample files
//! that no model was calibrated on (u2netp-int8's calibration pictures are listed in
//! models/manifest.json; a test checks the two lists share nothing).

pub const HELD_OUT_PHOTOS: [&str; 8] = [
    "rocket.jpg",
    "chelsea.png",
    "motorcycle_left.png",
    "camera.png",
    "astronaut.png",
    "group.jpg",
    "coffee.png",
    "horse.png",
];
