import { LabIcon } from '@jupyterlab/ui-components';

/** Three stacked layers: the sidebar's tab. */
export const stackmagicIcon = new LabIcon({
  name: 'stackmagic:stacks',
  svgstr: `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2 2 7l10 5 10-5-10-5z"/>
    <path d="m2 12 10 5 10-5-2.2-1.1L12 14.8 4.2 10.9 2 12z"/>
    <path d="m2 17 10 5 10-5-2.2-1.1L12 19.8 4.2 15.9 2 17z"/>
  </g>
</svg>`
});
