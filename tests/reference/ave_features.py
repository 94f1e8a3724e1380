"""Reference for the `ave` audio features, built on librosa: the mel spectrogram of SyncTalk_2D's
data_utils/ave (Wav2Lip's audio.py with its hparams) and the encoder rows of its AudDataset.

    ave_features.py WAV MEL_OUT.npy [ENCODER.onnx ROWS_OUT.npy [FEATURES_OUT.npy]]

WAV must be 16 kHz mono. MEL_OUT gets [T, 80] float32 (normalised log-mel, frame-major, as
AudDataset keeps it); ROWS_OUT the encoder's [N, 512] rows; FEATURES_OUT the features of
inference_328.py: those rows with the first and the last repeated once, [N + 2, 512].
The STFT is centred with zero padding, as librosa >= 0.10 does (SyncTalk_2D pins 0.10.1).
"""
import sys

import librosa
import numpy as np
import onnxruntime
import soundfile
from scipy import signal

SAMPLE_RATE, N_FFT, HOP, WIN, N_MELS, FMIN, FMAX = 16000, 800, 200, 800, 80, 55, 7600
PREEMPHASIS, MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = 0.97, -100, 20, 4.0


def mel_spectrogram(wav):
    emphasised = signal.lfilter([1, -PREEMPHASIS], [1], wav)
    spectrum = librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP, win_length=WIN,
                            center=True, pad_mode="constant")
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    mel = np.dot(basis, np.abs(spectrum))
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    return np.clip((2 * MAX_ABS) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS, -MAX_ABS, MAX_ABS)


def windows(mel):
    """AudDataset's items: 16 mel frames per 25 fps video frame, [1, 80, 16] each."""
    count = int((mel.shape[0] - 16) / 80.0 * float(25)) + 2
    items = []
    for index in range(count):
        start = int(80.0 * (index / float(25)))
        end = start + 16
        if end > mel.shape[0]:
            end = mel.shape[0]
            start = end - 16
        items.append(mel[start:end, :].T[np.newaxis])
    return np.stack(items).astype(np.float32)


def main():
    wav_path, mel_out = sys.argv[1:3]
    wav, rate = soundfile.read(wav_path, dtype="float32")
    if rate != SAMPLE_RATE or wav.ndim != 1:
        raise SystemExit(f"{wav_path}: {rate} Hz, {wav.ndim} dimensions; 16 kHz mono expected")
    mel = mel_spectrogram(wav).T
    np.save(mel_out, mel.astype(np.float32))
    if len(sys.argv) > 3:
        encoder_path, rows_out = sys.argv[3:5]
        session = onnxruntime.InferenceSession(encoder_path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        rows = [session.run(None, {name: item[np.newaxis]})[0].reshape(-1) for item in windows(mel)]
        rows = np.stack(rows).astype(np.float32)
        np.save(rows_out, rows)
        if len(sys.argv) > 5:
            np.save(sys.argv[5], np.concatenate([rows[:1], rows, rows[-1:]]))


if __name__ == "__main__":
    main()
