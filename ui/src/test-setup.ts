// jsdom has no matchMedia (uPlot asks it for the screen's pixel ratio when its module loads): a media query that
// never matches, as a browser without such a screen would answer.
if (!window.matchMedia) {
  window.matchMedia = (query: string): MediaQueryList =>
    ({
      media: query,
      matches: false,
      onchange: null,
      addEventListener: () => undefined,
      removeEventListener: () => undefined,
      addListener: () => undefined,
      removeListener: () => undefined,
      dispatchEvent: () => false,
    }) as MediaQueryList;
}
